"""A job's working directory as a build context: the base64 tar.gz a deploy uploads.

What goes in: everything under the directory except
  * `.git`, `__pycache__`, `.venv` and `*.pyc`, always;
  * what `.gitignore` files leave out, with git's semantics: the directory's own and nested ones
    (a deeper file decides before a shallower one, negation included, nothing is re-included
    below an excluded directory) and, when the directory sits inside a git work tree, those of
    its parent directories up to the work tree's root;
  * what `.tracksideignore` at the directory's root leaves out (same syntax). It decides before
    any `.gitignore`, so `!pattern` there uploads something git ignores.

Symbolic links stay links. A link whose target (followed to the end) is outside the directory is
refused, naming it; one inside is stored with a relative target computed from its resolved
location, which is what the lifecycle's unpacking accepts (it refuses absolute targets and any
that lexically leave the context). Devices, fifos and sockets are refused.

The archive is reproducible: entries sorted, owners dropped, modes reduced to 644/755, a fixed
timestamp on every entry and on the gzip stream, so the same files always pack to the same bytes.

The lifecycle refuses a build context over 50 MiB (packed, and unpacked counting tar headers) or
with more than 20,000 entries (`lifecycle.deploy.source`); packing checks the same limits and
fails with a message naming them before anything is uploaded.
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, cast

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

__all__ = [
    "MAX_BYTES",
    "MAX_ENTRIES",
    "BuildContextError",
    "list_included",
    "pack_directory",
]

MiB = 1024 * 1024
# the lifecycle's limits (lifecycle.deploy.source.MAX_CONTEXT_BYTES / MAX_CONTEXT_ENTRIES; a test
# keeps them equal): the packed archive and the unpacked tar stream each at most MAX_BYTES
MAX_BYTES = 50 * MiB
MAX_ENTRIES = 20_000

IGNORE_FILE = ".tracksideignore"
GITIGNORE = ".gitignore"
ALWAYS_LEFT_OUT = frozenset({".git", "__pycache__", ".venv"})
ALWAYS_LEFT_OUT_SUFFIX = ".pyc"

# 1980-01-02: every entry's timestamp. Not 0: zip-based tools (wheels built from the job's files)
# refuse dates before 1980.
FIXED_MTIME = 315_619_200
_BLOCK = tarfile.BLOCKSIZE
_ROOT = PurePosixPath(".")  # the directory itself, as a relative path


class BuildContextError(Exception):
    """The directory cannot be packed as a build context; the message says which file and why."""


@dataclass(frozen=True)
class _Entry:
    path: Path  # on disk
    rel: PurePosixPath  # in the archive
    kind: str  # "dir" | "file" | "link"
    size: int = 0
    executable: bool = False
    link: str = ""  # a link's target, relative to the link's directory


@dataclass(frozen=True)
class _IgnoreFile:
    """One ignore file and the part of the tree it speaks about."""

    spec: GitIgnoreSpec
    inside: PurePosixPath  # paths under this directory (relative to the root) are its business
    prefix: PurePosixPath  # put before a path relative to `inside` (a parent's .gitignore sees the
    # root as a subdirectory)

    def verdict(self, rel: PurePosixPath, is_dir: bool) -> bool | None:
        """True: leave out; False: keep (a negation matched); None: no pattern matched."""
        local = rel if self.inside == _ROOT else rel.relative_to(self.inside)
        text = (self.prefix / local).as_posix() + ("/" if is_dir else "")
        include: bool | None = self.spec.check_file(text).include
        return include


def list_included(directory: Path) -> list[PurePosixPath]:
    """Every entry `pack_directory` would put in the archive (files, directories, links), relative
    to `directory`, in archive order. Raises `BuildContextError` where packing would."""
    return [entry.rel for entry in _scan(directory)]


def pack_directory(directory: Path, *, max_bytes: int = MAX_BYTES, max_entries: int = MAX_ENTRIES) -> str:
    """`directory` as base64 (ASCII) of a reproducible tar.gz, for the `build_context` of a deploy.

    Raises `BuildContextError` naming the file or the limit when it cannot be packed as something
    the lifecycle accepts (`max_bytes`/`max_entries` are the lifecycle's limits; tests lower them).
    """
    entries = _scan(directory)
    if len(entries) > max_entries:
        raise _too_large(directory, f"it has {len(entries)} files and directories", f"{max_entries} entries")
    least = sum(_BLOCK + _padded(e.size) for e in entries)  # tar headers and contents, at least
    if least > max_bytes:
        raise _too_large(directory, f"its files add up to {_size(least)}", _size(max_bytes))

    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, compresslevel=6) as gz:
        stream = _CountingWriter(gz, max_bytes, directory)
        with tarfile.open(fileobj=cast("IO[bytes]", stream), mode="w", format=tarfile.PAX_FORMAT) as tar:
            for entry in entries:
                _add(tar, entry)
    if packed.tell() > max_bytes:  # the lifecycle's second limit; gzip rarely makes a tar larger
        raise _too_large(directory, f"it packs to {_size(packed.tell())}", _size(max_bytes))
    return base64.b64encode(packed.getvalue()).decode("ascii")


# ---- what goes in ----------------------------------------------------------------------------


def _scan(directory: Path) -> list[_Entry]:
    root = Path(os.path.realpath(directory))
    if not root.is_dir():
        raise BuildContextError(f"{directory} is not a directory")
    ignore_files = [*_parent_gitignores(root), *_ignore_file(root / GITIGNORE, _ROOT)]
    tracksideignore = _ignore_file(root / IGNORE_FILE, _ROOT)
    return list(_walk(directory, root, _ROOT, ignore_files, tracksideignore))


def _walk(
    shown_root: Path,
    root: Path,
    rel_dir: PurePosixPath,
    ignore_files: list[_IgnoreFile],
    tracksideignore: list[_IgnoreFile],
) -> Iterator[_Entry]:
    here = root.joinpath(*rel_dir.parts)
    try:
        children = sorted(os.scandir(here), key=lambda e: e.name)
    except OSError as e:
        raise BuildContextError(f"cannot read {_shown(shown_root, rel_dir)}: {e.strerror or e}") from None
    for child in children:
        rel = rel_dir / child.name  # _ROOT / "x" is "x"
        is_dir = child.is_dir(follow_symlinks=False)
        if _left_out(rel, is_dir, ignore_files, tracksideignore):
            continue
        try:
            st = child.stat(follow_symlinks=False)
        except OSError as e:
            raise BuildContextError(f"cannot read {_shown(shown_root, rel)}: {e.strerror or e}") from None
        if stat.S_ISLNK(st.st_mode):
            yield _Entry(Path(child.path), rel, "link", link=_link_target(shown_root, root, rel))
        elif stat.S_ISDIR(st.st_mode):
            yield _Entry(Path(child.path), rel, "dir")
            nested = _ignore_file(Path(child.path) / GITIGNORE, rel)
            yield from _walk(shown_root, root, rel, [*ignore_files, *nested], tracksideignore)
        elif stat.S_ISREG(st.st_mode):
            yield _Entry(Path(child.path), rel, "file", size=st.st_size, executable=bool(st.st_mode & 0o100))
        else:
            raise BuildContextError(
                f"{_shown(shown_root, rel)} is not a file, directory or symbolic link (a device, fifo or "
                f"socket) and cannot be uploaded; leave it out with {IGNORE_FILE}"
            )


def _left_out(
    rel: PurePosixPath, is_dir: bool, ignore_files: list[_IgnoreFile], tracksideignore: list[_IgnoreFile]
) -> bool:
    if rel.name in ALWAYS_LEFT_OUT or (not is_dir and rel.name.endswith(ALWAYS_LEFT_OUT_SUFFIX)):
        return True
    for ignore_file in (*tracksideignore, *reversed(ignore_files)):  # the deepest .gitignore first
        verdict = ignore_file.verdict(rel, is_dir)
        if verdict is not None:
            return verdict
    return False


def _ignore_file(path: Path, inside: PurePosixPath, prefix: PurePosixPath = _ROOT) -> list[_IgnoreFile]:
    """The ignore file at `path` as a one-element list, or [] when there is none."""
    if not path.is_file():
        return []
    import pathspec

    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        spec = pathspec.GitIgnoreSpec.from_lines(lines)
    except OSError as e:
        raise BuildContextError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:  # pathspec's pattern errors are ValueErrors
        raise BuildContextError(f"{path} has an invalid pattern: {e}") from None
    return [_IgnoreFile(spec, inside, prefix)]


def _parent_gitignores(root: Path) -> list[_IgnoreFile]:
    """The .gitignore files above `root` up to its git work tree's root, farthest first; none when
    `root` is the work tree's root or not inside one."""
    if (root / ".git").exists():
        return []
    parents: list[Path] = []
    for parent in root.parents:
        parents.append(parent)
        if (parent / ".git").exists():
            break
    else:
        return []
    found: list[_IgnoreFile] = []
    for parent in reversed(parents):
        prefix = PurePosixPath(root.relative_to(parent).as_posix())
        for ignore_file in _ignore_file(parent / GITIGNORE, _ROOT, prefix):
            # one that leaves out the directory itself (or a directory on the way to it) would
            # leave out everything: the user named this directory, so that file has no say
            on_the_way = [prefix, *prefix.parents][:-1]
            if not any(ignore_file.spec.check_file(f"{d.as_posix()}/").include for d in on_the_way):
                found.append(ignore_file)
    return found


def _link_target(shown_root: Path, root: Path, rel: PurePosixPath) -> str:
    """The target a link gets in the archive: relative to its directory, free of `..` beyond the
    root and of intermediate links (so the lifecycle's lexical check and its realpath check agree)."""
    link = root.joinpath(*rel.parts)
    resolved = os.path.realpath(link)
    if os.path.commonpath([str(root), resolved]) != str(root):
        try:
            target = os.readlink(link)
        except OSError:
            target = "?"
        raise BuildContextError(
            f"{_shown(shown_root, rel)} is a symbolic link pointing outside {shown_root} (to {target}); "
            f"a build context holds only what is inside it: copy the file in, or leave the link out "
            f"with {IGNORE_FILE}"
        )
    return os.path.relpath(resolved, root.joinpath(*rel.parent.parts))


def _shown(shown_root: Path, rel: PurePosixPath) -> str:
    return str(shown_root / rel) if rel != _ROOT else str(shown_root)


# ---- the archive -----------------------------------------------------------------------------


def _add(tar: tarfile.TarFile, entry: _Entry) -> None:
    info = tarfile.TarInfo(entry.rel.as_posix())
    info.mtime = FIXED_MTIME
    if entry.kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    elif entry.kind == "link":
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.link, 0o777
        tar.addfile(info)
    else:
        info.size, info.mode = entry.size, 0o755 if entry.executable else 0o644
        try:
            with open(entry.path, "rb") as content:
                tar.addfile(info, cast("IO[bytes]", _Exactly(content, entry.size, entry.path)))
        except OSError as e:
            raise BuildContextError(f"cannot read {entry.path}: {e.strerror or e}") from None


class _Exactly:
    """A file read as the size it had when it was listed: one that changes meanwhile is an error,
    not a corrupt archive."""

    def __init__(self, stream: IO[bytes], size: int, path: Path) -> None:
        self._stream, self._left, self._path = stream, size, path

    def read(self, size: int = -1) -> bytes:
        want = self._left if size < 0 else min(size, self._left)
        chunk = self._stream.read(want)
        self._left -= len(chunk)
        if len(chunk) < want or (self._left == 0 and self._stream.read(1)):
            raise BuildContextError(f"{self._path} changed while it was being packed; try again")
        return chunk


class _CountingWriter:
    """The tar stream on its way into gzip, refused as soon as it outgrows the unpacked limit."""

    def __init__(self, target: gzip.GzipFile, limit: int, directory: Path) -> None:
        self._target, self._limit, self._directory = target, limit, directory
        self.count = 0

    def write(self, data: bytes) -> int:
        self.count += len(data)
        if self.count > self._limit:
            raise _too_large(
                self._directory, f"it unpacks to more than {_size(self._limit)}", _size(self._limit)
            )
        return self._target.write(data)

    def tell(self) -> int:
        return self.count


def _padded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def _size(n: int) -> str:
    return f"{n / MiB:.1f}".removesuffix(".0") + " MiB" if n >= MiB else f"{n} bytes"


def _too_large(directory: Path, what: str, limit: str) -> BuildContextError:
    return BuildContextError(
        f"{directory} is too large to upload as a build context: {what}, and the lifecycle accepts at "
        f"most {limit}. Leave big files out with {IGNORE_FILE} (or .gitignore), or deploy from git."
    )
