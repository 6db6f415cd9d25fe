"""Packing a job's working directory (trackside.build_context): what goes in, and that whatever it
produces is accepted by the lifecycle's unpacking (lifecycle.deploy.source.unpack_build_context)."""

from __future__ import annotations

import os
import random
import shutil
import stat
from pathlib import Path, PurePosixPath

import pytest

from lifecycle.deploy.source import MAX_CONTEXT_BYTES, MAX_CONTEXT_ENTRIES, unpack_build_context
from trackside.build_context import (
    MAX_BYTES,
    MAX_ENTRIES,
    BuildContextError,
    list_included,
    pack_directory,
)


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def included(directory: Path) -> set[str]:
    return {p.as_posix() for p in list_included(directory)}


def unpacked(archive: str, dest: Path) -> dict[str, object]:
    """The tree the lifecycle makes of `archive`: path -> "dir" | ("link", target) | (text, executable)."""
    root = unpack_build_context(archive, dest)
    tree: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            tree[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            tree[rel] = "dir"
        else:
            tree[rel] = (path.read_text(), bool(path.stat().st_mode & 0o100))
    return tree


def test_the_limits_are_the_lifecycles() -> None:
    assert (MAX_BYTES, MAX_ENTRIES) == (MAX_CONTEXT_BYTES, MAX_CONTEXT_ENTRIES)


def test_a_directory_round_trips_through_the_lifecycles_unpacking(tmp_path: Path) -> None:
    job = tmp_path / "job"
    write(job, {"job.yaml": "name: j\n", "pkg/model.py": "X = 1\n", "pkg/data/table.csv": "a,b\n"})
    (job / "empty").mkdir()
    (job / "run.sh").write_text("#!/bin/sh\n")
    (job / "run.sh").chmod(0o750)
    os.symlink("pkg/model.py", job / "alias.py")
    os.symlink(job / "pkg" / "data", job / "data")  # absolute but inside: stored relative
    os.symlink("../data/table.csv", job / "pkg" / "table.csv")  # through a linked directory

    tree = unpacked(pack_directory(job), tmp_path / "unpacked")

    assert tree == {
        "alias.py": ("link", "pkg/model.py"),
        "data": ("link", "pkg/data"),
        "empty": "dir",
        "job.yaml": ("name: j\n", False),
        "pkg": "dir",
        "pkg/data": "dir",
        "pkg/data/table.csv": ("a,b\n", False),
        "pkg/model.py": ("X = 1\n", False),
        "pkg/table.csv": ("link", "data/table.csv"),
        "run.sh": ("#!/bin/sh\n", True),
    }
    root = tmp_path / "unpacked"
    assert (root / "pkg" / "table.csv").read_text() == "a,b\n"
    assert stat.S_IMODE((root / "run.sh").stat().st_mode) == 0o755


def test_the_same_files_pack_to_the_same_bytes(tmp_path: Path) -> None:
    job = tmp_path / "job"
    write(job, {"job.yaml": "name: j\n", "b/c.py": "C = 3\n", "a.py": "A = 1\n"})
    os.symlink("a.py", job / "link.py")
    first = pack_directory(job)
    assert first.isascii()

    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(job, copy, symlinks=True)
    for path in [copy, *copy.rglob("*")]:
        os.utime(path, (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    (copy / "a.py").chmod(0o600)  # only the executable bit matters

    assert pack_directory(copy) == first
    (copy / "a.py").write_text("A = 2\n")
    assert pack_directory(copy) != first


def test_always_left_out_even_when_an_ignore_file_asks_for_them(tmp_path: Path) -> None:
    job = tmp_path / "job"
    write(
        job,
        {
            "job.yaml": "name: j\n",
            "pkg/__pycache__/m.cpython-311.pyc": "",
            "pkg/m.pyc": "",
            ".venv/bin/python": "",
            ".git/config": "",
            "sub/.git": "gitdir: ../../.git/modules/sub\n",  # a submodule's .git is a file
            ".tracksideignore": "!*.pyc\n!.venv/\n!__pycache__/\n",
        },
    )
    assert included(job) == {"job.yaml", "pkg", "sub", ".tracksideignore"}


def test_gitignore_files_root_and_nested_with_git_semantics(tmp_path: Path) -> None:
    job = tmp_path / "job"
    write(
        job,
        {
            ".gitignore": "*.log\n!keep.log\nbuild/\n/data.csv\n*.md\n",
            "job.yaml": "name: j\n",
            "app.log": "",
            "keep.log": "",
            "data.csv": "",
            "build/out.bin": "",
            "build/keep.log": "",  # re-included by name, but its directory is left out
            "notes.md": "",
            "sub/.gitignore": "*.txt\n!important.txt\n!*.md\n",
            "sub/data.csv": "",  # /data.csv is anchored to the root's .gitignore
            "sub/a.txt": "",
            "sub/important.txt": "",
            "sub/readme.md": "",  # the deeper .gitignore decides
            "sub/deep/b.txt": "",
            "sub/deep/c.log": "",
            "sub/deep/keep.log": "",
        },
    )
    assert included(job) == {
        ".gitignore",
        "job.yaml",
        "keep.log",
        "sub",
        "sub/.gitignore",
        "sub/data.csv",
        "sub/important.txt",
        "sub/readme.md",
        "sub/deep",
        "sub/deep/keep.log",
    }


def test_tracksideignore_decides_before_gitignore(tmp_path: Path) -> None:
    job = tmp_path / "job"
    write(
        job,
        {
            ".gitignore": "*.bin\n",
            ".tracksideignore": "# not for the platform\nmodels/\ntests/\n!weights.bin\n",
            "job.yaml": "name: j\n",
            "models/big.onnx": "",
            "tests/test_job.py": "",
            "sub/models/x.onnx": "",  # models/ matches at any depth, like in .gitignore
            "weights.bin": "",
            "other.bin": "",
        },
    )
    assert included(job) == {".gitignore", ".tracksideignore", "job.yaml", "sub", "weights.bin"}


def test_gitignore_files_above_the_directory_count_up_to_the_work_tree_root(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write(
        repo,
        {
            ".git/HEAD": "ref: refs/heads/main\n",
            ".gitignore": "*.env\njobs/adder/local/\n/top-only.txt\njobs/\n",
            "jobs/.gitignore": "*.tmp\n",
            "jobs/adder/job.yaml": "name: adder\n",
            "jobs/adder/secret.env": "TOKEN=1\n",
            "jobs/adder/scratch.tmp": "",
            "jobs/adder/local/cache.db": "",
            "jobs/adder/top-only.txt": "",
        },
    )
    (tmp_path / ".gitignore").write_text("*.yaml\n")  # outside the work tree: not read
    # `jobs/` in the root's .gitignore would leave out everything here; that file then has no say
    assert included(repo / "jobs" / "adder") == {
        "job.yaml",
        "local",
        "local/cache.db",
        "secret.env",
        "top-only.txt",
    }

    (repo / ".gitignore").write_text("*.env\njobs/adder/local/\n/top-only.txt\n")
    assert included(repo / "jobs" / "adder") == {"job.yaml", "top-only.txt"}

    shutil.rmtree(repo / ".git")  # not a work tree: only the directory's own ignore files count
    assert included(repo / "jobs" / "adder") == {
        "job.yaml",
        "local",
        "local/cache.db",
        "scratch.tmp",
        "secret.env",
        "top-only.txt",
    }


@pytest.mark.parametrize("target", ["/etc/passwd", "../../outside.txt", "../sub/../../outside.txt"])
def test_links_pointing_outside_are_refused_naming_them(tmp_path: Path, target: str) -> None:
    (tmp_path / "outside.txt").write_text("secret")
    job = tmp_path / "job"
    write(job, {"job.yaml": "name: j\n", "sub/x.py": ""})
    os.symlink(target, job / "sub" / "escape")

    with pytest.raises(BuildContextError) as refused:
        pack_directory(job)
    assert f"{job / 'sub' / 'escape'} is a symbolic link pointing outside {job} (to {target})" in str(
        refused.value
    )
    with pytest.raises(BuildContextError, match="escape is a symbolic link pointing outside"):
        list_included(job)

    (job / ".tracksideignore").write_text("escape\n")  # leaving it out is the way round
    assert "sub/escape" not in included(job)
    unpack_build_context(pack_directory(job), tmp_path / "unpacked")


def test_a_link_through_a_linked_directory_that_escapes_is_refused(tmp_path: Path) -> None:
    job = tmp_path / "job"
    write(job, {"job.yaml": "name: j\n", "a/b/f.py": ""})
    os.symlink("a/b", job / "ab")
    os.symlink(".", job / "s")
    os.symlink("s/s/../..", job / "up")  # lexically the job itself, really two levels above it
    with pytest.raises(BuildContextError, match="up is a symbolic link pointing outside"):
        pack_directory(job)
    os.remove(job / "up")
    os.symlink("ab/../f.py", job / "fine")  # lexically ab/../f.py = f.py; really a/f.py (missing)
    os.symlink("ab/../b/f.py", job / "real")
    tree = unpacked(pack_directory(job), tmp_path / "unpacked")
    assert tree["fine"] == ("link", "a/f.py") and tree["real"] == ("link", "a/b/f.py")


def test_a_fifo_is_refused_naming_it(tmp_path: Path) -> None:
    job = tmp_path / "job"
    write(job, {"job.yaml": "name: j\n"})
    os.mkfifo(job / "pipe")
    with pytest.raises(BuildContextError, match=r"job/pipe is not a file, directory or symbolic link"):
        pack_directory(job)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(BuildContextError, match="missing is not a directory"):
        pack_directory(tmp_path / "missing")


def test_too_large_is_refused_before_reading_naming_the_limit(tmp_path: Path) -> None:
    job = tmp_path / "job"
    write(job, {"job.yaml": "name: j\n"})
    with open(job / "model.bin", "wb") as sparse:  # 60 MiB that take no disk space
        sparse.truncate(60 * 1024 * 1024)
    with pytest.raises(BuildContextError) as refused:
        pack_directory(job)
    message = str(refused.value)
    assert f"{job} is too large to upload as a build context" in message
    assert "its files add up to 60 MiB" in message and "at most 50 MiB" in message
    assert ".tracksideignore" in message

    (job / ".tracksideignore").write_text("*.bin\n")
    assert included(job) == {".tracksideignore", "job.yaml"}


def test_too_many_entries_is_refused_naming_the_limit(tmp_path: Path) -> None:
    job = tmp_path / "job"
    write(job, {f"f{i}.txt": "" for i in range(9)})
    pack_directory(job, max_entries=9)
    (job / "sub").mkdir()
    with pytest.raises(BuildContextError, match=r"it has 10 files and directories, .* at most 9 entries"):
        pack_directory(job, max_entries=9)


LIMIT = 64 * 1024


@pytest.mark.parametrize("compressible", [True, False], ids=["zeros", "random"])
def test_what_packs_within_a_limit_unpacks_within_it(tmp_path: Path, compressible: bool) -> None:
    """Around the limit, pack either refuses (naming the limit) or makes what unpack accepts: tar
    headers and padding count (zeros compress to almost nothing), and random data does not shrink."""
    rng = random.Random(5)
    outcomes = set()
    for i, size in enumerate(range(LIMIT - 8 * 1024, LIMIT + 512, 211)):
        job = tmp_path / f"job{i}"
        job.mkdir()
        data = bytes(size) if compressible else rng.randbytes(size)
        (job / "blob").write_bytes(data[: size - 600])
        (job / "small").write_bytes(data[size - 600 :])
        try:
            archive = pack_directory(job, max_bytes=LIMIT)
        except BuildContextError as e:
            assert "at most 65536 bytes" in str(e)
            outcomes.add("refused")
            continue
        root = unpack_build_context(archive, tmp_path / f"out{i}", max_bytes=LIMIT, max_entries=20)
        assert (root / "blob").read_bytes() + (root / "small").read_bytes() == data
        outcomes.add("packed")
    assert outcomes == {"refused", "packed"}  # the range straddles the limit


def test_list_included_is_the_archive_order(tmp_path: Path) -> None:
    job = tmp_path / "job"
    write(job, {"b.py": "", "a/z.py": "", "a/b/c.py": "", ".gitignore": "ignored/\n", "ignored/x": ""})
    assert list_included(job) == [
        PurePosixPath(p) for p in (".gitignore", "a", "a/b", "a/b/c.py", "a/z.py", "b.py")
    ]
