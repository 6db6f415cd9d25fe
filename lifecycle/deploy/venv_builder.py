"""Embedded builder: one uv virtual environment per dependency fingerprint, plus a code copy per
version.

Layout of `cache_dir`:

    <fingerprint>/venv -> v-<id>   the published environment (a symlink, swapped atomically)
    <fingerprint>/v-<id>/          the environment itself
    <fingerprint>/users/<code-id>  one record per code copy that runs on it (its path inside)
    wheels/<wrapper-hash>/*.whl    trackside-wrapper, built once per wrapper source
    locks/                         flock files serialising work on one fingerprint
    salt                           key for hashing build env values into fingerprints

An environment is built in its own `v-<id>` directory and becomes visible only when the `venv`
link points to it, so a failed or interrupted build never leaves a half environment behind.
Build env values reach uv only through its process environment: they are not written to any
file, and lines of uv's output are scrubbed of them before they reach the build log.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from .builder import BuildError, BuildRequest, BuildResult
from .fingerprint import (
    FINGERPRINT_RE,
    Interpreter,
    dependency_fingerprint,
    load_salt,
    requirements_content,
    tree_hash,
)
from .streamed_command import Redactor, run_streamed

Log = Callable[[str], None]

# What uv may see of the lifecycle's own environment: enough to find the network, certificates,
# its cache and configuration, and nothing else (sdist builds run arbitrary code).
_INHERITED_ENV = frozenset(
    {"PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "USER", "LOGNAME", "XDG_CACHE_HOME"}
    | {"SSL_CERT_FILE", "SSL_CERT_DIR"}
    | {f"{name}_proxy" for name in ("http", "https", "no", "all")}
    | {f"{name}_PROXY" for name in ("HTTP", "HTTPS", "NO", "ALL")}
)
# Racetrack jobs point pip at private indexes through build_env; uv reads its own names.
_PIP_TO_UV = {
    "PIP_INDEX_URL": "UV_INDEX_URL",
    "PIP_EXTRA_INDEX_URL": "UV_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS": "UV_FIND_LINKS",
}
_CODE_IGNORED = shutil.ignore_patterns(".git", "__pycache__", ".venv")
_PYTHON_SPEC_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+=<>,~!*-]*")
_NOT_FOUND_RE = re.compile(r"because (\S+?) was not found in the package registry", re.IGNORECASE)
_NO_VERSION_RE = re.compile(r"because there (?:is|are) no versions? of (\S+?)(?:,| and |$)", re.IGNORECASE)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock; it serialises threads too, as each holder opens its own descriptor."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _find_uv() -> Path:
    try:
        import uv

        return Path(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if not found:
            raise RuntimeError("uv is not installed (pip install uv)") from None
        return Path(found)


def _uv_error_summary(lines: Iterable[str]) -> str:
    wanted = [
        line.strip()
        for line in lines
        if line.strip() and not line.startswith(("Using Python", "Using CPython", "Resolved ", "Checked "))
    ]
    errors = [line for line in wanted if line.startswith(("error:", "cause:", "hint:"))]
    return " ".join((errors or wanted)[-6:]) or "no output"


class VenvBuilder:
    def __init__(
        self, cache_dir: Path, code_root: Path, wrapper_source: Path, uv: Path | None = None
    ) -> None:
        self.cache_dir = cache_dir.resolve()
        self.code_root = code_root.resolve()
        self.wrapper_source = wrapper_source.resolve()
        self.uv = uv or _find_uv()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.code_root.mkdir(parents=True, exist_ok=True)
        self._salt = load_salt(self.cache_dir / "salt")

    # ---- Builder ---------------------------------------------------------------------------

    def build(self, request: BuildRequest, log: Log) -> BuildResult:
        redact = Redactor(request.build_env.values())
        interpreter = self._interpreter(request.python_version)
        log(f"Python {interpreter.version} ({interpreter.implementation}, {interpreter.path})")
        if request.build_env:
            log(f"build environment variables: {', '.join(sorted(request.build_env))} (values hidden)")
        wrapper_hash = tree_hash(self.wrapper_source)
        wheel = self._wrapper_wheel(wrapper_hash, interpreter, log)
        code_dir = self._copy_code(request)
        log(f"code copied to {code_dir}")
        try:
            requirements = self._requirements_file(request, code_dir)
            fingerprint = dependency_fingerprint(
                interpreter,
                wrapper_hash,
                None if requirements is None else requirements_content(requirements, code_dir),
                request.build_env,
                self._salt,
            )
            with _locked(self._lock_path(fingerprint)):
                env_dir, cached = self._environment(
                    fingerprint, interpreter, wheel, requirements, code_dir, request, log, redact
                )
                if cached and request.check_requirements:
                    self._check(env_dir, request.build_env, log, redact)
                users = self.cache_dir / fingerprint / "users"
                users.mkdir(exist_ok=True)
                (users / code_dir.name).write_text(str(code_dir))
        except BaseException:
            self._remove_code(code_dir)
            raise
        log(f"environment {fingerprint[:12]} {'reused' if cached else 'built'}")
        return BuildResult(
            environment_id=fingerprint, python=env_dir / "bin" / "python", code_dir=code_dir, cached=cached
        )

    def restore(self, environment_id: str, code_dir: Path) -> BuildResult | None:
        """The build of a version deployed earlier (for restarts), None when its files are gone."""
        if not FINGERPRINT_RE.fullmatch(environment_id):
            return None
        python = self.cache_dir / environment_id / "venv" / "bin" / "python"
        if not python.exists() or not code_dir.is_dir():
            return None
        return BuildResult(environment_id=environment_id, python=python, code_dir=code_dir, cached=True)

    def release(self, result: BuildResult) -> None:
        self._remove_code(result.code_dir)
        fingerprint = result.environment_id
        if not FINGERPRINT_RE.fullmatch(fingerprint):
            return
        with _locked(self._lock_path(fingerprint)):
            (self.cache_dir / fingerprint / "users" / result.code_dir.name).unlink(missing_ok=True)
            self._prune_environment(fingerprint)

    def prune(self) -> list[str]:
        """Remove environments no existing code copy uses, stale wheels and leftovers of
        interrupted builds; returns the removed environment ids."""
        removed = []
        for entry in sorted(self.cache_dir.iterdir()):
            if FINGERPRINT_RE.fullmatch(entry.name):
                with _locked(self._lock_path(entry.name)):
                    if self._prune_environment(entry.name):
                        removed.append(entry.name)
        current = tree_hash(self.wrapper_source)[:32]
        with _locked(self.cache_dir / "locks" / "wheels.lock"):
            for entry in (self.cache_dir / "wheels").glob("*"):
                if entry.name != current:
                    shutil.rmtree(entry, ignore_errors=True)
            shutil.rmtree(self.cache_dir / "tmp", ignore_errors=True)
        return removed

    # ---- environments ------------------------------------------------------------------------

    def _lock_path(self, fingerprint: str) -> Path:
        return self.cache_dir / "locks" / f"{fingerprint}.lock"

    def _environment(
        self,
        fingerprint: str,
        interpreter: Interpreter,
        wheel: Path,
        requirements: Path | None,
        code_dir: Path,
        request: BuildRequest,
        log: Log,
        redact: Redactor,
    ) -> tuple[Path, bool]:
        """The published environment of `fingerprint`, built first when missing (or no_cache).
        Called with the fingerprint's lock held."""
        fp_dir = self.cache_dir / fingerprint
        link = fp_dir / "venv"
        if not request.no_cache and (link / "bin" / "python").exists():
            log(f"reusing environment {fingerprint[:12]}")
            return link, True
        fp_dir.mkdir(parents=True, exist_ok=True)
        self._remove_unpublished(fp_dir)
        target = fp_dir / f"v-{secrets.token_hex(6)}"
        env = self._uv_env(request.build_env)
        refresh = ["--refresh"] if request.no_cache else []
        try:
            log(f"creating environment {fingerprint[:12]}")
            venv = ["venv", "--python", str(interpreter.path), str(target)]
            self._uv("creating the environment", venv, env, log, redact, code_dir)
            python = str(target / "bin" / "python")
            install = ["pip", "install", "--python", python, "--compile-bytecode", *refresh]
            log("installing trackside-wrapper")
            self._uv("installing trackside-wrapper", [*install, str(wheel)], env, log, redact, code_dir)
            if requirements is not None:
                name = requirements.relative_to(code_dir.resolve()).as_posix()
                log(f"installing {name}")
                self._uv(
                    f"installing {name}", [*install, "-r", str(requirements)], env, log, redact, code_dir
                )
            if request.check_requirements:
                self._check(target, request.build_env, log, redact)
            previous = os.readlink(link) if link.is_symlink() else None
            staged = fp_dir / f"venv.{target.name}"
            os.symlink(target.name, staged)
            os.replace(staged, link)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            if not link.exists() and not any((fp_dir / "users").glob("*")):
                shutil.rmtree(fp_dir, ignore_errors=True)
            raise
        if previous and previous != target.name:
            # no_cache rebuild: processes started from `venv` now resolve to the new copy
            shutil.rmtree(fp_dir / previous, ignore_errors=True)
        return link, False

    def _remove_unpublished(self, fp_dir: Path) -> None:
        """Leftovers of builds that were interrupted before publishing."""
        link = fp_dir / "venv"
        published = os.readlink(link) if link.is_symlink() else None
        for entry in fp_dir.iterdir():
            if entry.name.startswith("venv.") and entry.is_symlink():
                entry.unlink()
            elif entry.name.startswith("v-") and entry.name != published:
                shutil.rmtree(entry, ignore_errors=True)

    def _prune_environment(self, fingerprint: str) -> bool:
        """Drop records of code copies that are gone; remove the environment when none is left.
        Called with the fingerprint's lock held."""
        fp_dir = self.cache_dir / fingerprint
        users = fp_dir / "users"
        if users.is_dir():
            for record in users.iterdir():
                if not Path(record.read_text().strip()).is_dir():
                    record.unlink(missing_ok=True)
            if any(users.iterdir()):
                return False
        shutil.rmtree(fp_dir, ignore_errors=True)
        return True

    def _check(self, env_dir: Path, build_env: Mapping[str, str], log: Log, redact: Redactor) -> None:
        log("checking the installed requirements for conflicts")
        rc, lines = self._run_uv(
            ["pip", "check", "--python", str(env_dir / "bin" / "python")],
            self._uv_env(build_env),
            log,
            redact,
            None,
        )
        if rc != 0:
            conflicts = [line.strip() for line in lines if "requires" in line or "missing" in line.lower()]
            raise BuildError("conflicting requirements: " + "; ".join(conflicts or lines[-3:]))

    # ---- inputs ---------------------------------------------------------------------------

    def _interpreter(self, spec: str | None) -> Interpreter:
        if spec is None:
            path = Path(getattr(sys, "_base_executable", None) or sys.executable)
        else:
            if not _PYTHON_SPEC_RE.fullmatch(spec):
                raise BuildError(f"python_version {spec!r} is not a Python version")
            found = subprocess.run(
                [str(self.uv), "python", "find", "--system", "--no-config", "--", spec],
                capture_output=True,
                text=True,
                env=self._uv_env({}),
                check=False,
            )
            if found.returncode != 0 or not found.stdout.strip():
                reason = _uv_error_summary(found.stderr.splitlines())
                raise BuildError(f"Python {spec} is not available on this machine ({reason})")
            path = Path(found.stdout.strip().splitlines()[-1])
        probe = subprocess.run(
            [
                str(path),
                "-I",
                "-c",
                "import platform; print(platform.python_implementation(), platform.python_version())",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode != 0:
            raise BuildError(f"the Python interpreter {path} does not run: {probe.stderr.strip()[-300:]}")
        implementation, version = probe.stdout.split()
        return Interpreter(path, implementation, version)

    def _wrapper_wheel(self, wrapper_hash: str, interpreter: Interpreter, log: Log) -> Path:
        wheel_dir = self.cache_dir / "wheels" / wrapper_hash[:32]
        found = sorted(wheel_dir.glob("*.whl"))
        if found:
            return found[0]
        with _locked(self.cache_dir / "locks" / "wheels.lock"):
            found = sorted(wheel_dir.glob("*.whl"))
            if found:
                return found[0]
            log("building the trackside-wrapper wheel (once per wrapper version)")
            staging = self.cache_dir / "tmp" / f"wheel-{secrets.token_hex(6)}"
            try:
                rc, lines = self._run_uv(
                    [
                        "build",
                        "--wheel",
                        "--python",
                        str(interpreter.path),
                        "--out-dir",
                        str(staging),
                        str(self.wrapper_source),
                    ],
                    self._uv_env({}),
                    lambda line: None,
                    Redactor(()),
                    None,
                )
                if rc != 0:
                    raise BuildError(f"building trackside-wrapper failed: {_uv_error_summary(lines)}")
                wheel_dir.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging, wheel_dir)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return sorted(wheel_dir.glob("*.whl"))[0]

    def _copy_code(self, request: BuildRequest) -> Path:
        for part in (request.job_name, request.job_version):
            if not part or part in (".", "..") or "/" in part or "\0" in part:
                raise BuildError(f"{part!r} cannot name a directory")
        code_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(6)}"
        code_dir = self.code_root / request.job_name / request.job_version / code_id
        if not request.source_dir.is_dir():
            raise BuildError(f"the job's source directory {request.source_dir} does not exist")
        shutil.copytree(request.source_dir, code_dir, symlinks=True, ignore=_CODE_IGNORED)
        return code_dir

    def _remove_code(self, code_dir: Path) -> None:
        if not code_dir.resolve().is_relative_to(self.code_root):
            return  # not a copy this builder made
        shutil.rmtree(code_dir, ignore_errors=True)
        for parent in (code_dir.parent, code_dir.parent.parent):
            if parent == self.code_root or not parent.is_relative_to(self.code_root):
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def _requirements_file(self, request: BuildRequest, code_dir: Path) -> Path | None:
        if not request.requirements_path:
            return None
        path = (code_dir / request.requirements_path).resolve()
        if not path.is_relative_to(code_dir.resolve()):
            raise BuildError(
                f"requirements_path {request.requirements_path!r} points outside the job's directory"
            )
        if not path.is_file():
            raise BuildError(f"requirements file {request.requirements_path!r} not found in the job's source")
        return path

    # ---- running uv --------------------------------------------------------------------------

    def _uv_env(self, build_env: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in _INHERITED_ENV or k.startswith("UV_")}
        for pip_name, uv_name in _PIP_TO_UV.items():
            if pip_name in build_env and uv_name not in build_env:
                env[uv_name] = build_env[pip_name]
        env.update(build_env)
        env.update(UV_PYTHON_DOWNLOADS="never", NO_COLOR="1")
        return env

    def _uv(
        self, what: str, args: list[str], env: dict[str, str], log: Log, redact: Redactor, cwd: Path | None
    ) -> None:
        rc, lines = self._run_uv(args, env, log, redact, cwd)
        if rc == 0:
            return
        text = " ".join(lines)
        missing = _NOT_FOUND_RE.search(text)
        if missing:
            raise BuildError(f"requirement {missing.group(1)!r} was not found in the package registry")
        no_version = _NO_VERSION_RE.search(text)
        if no_version:
            raise BuildError(f"requirement {no_version.group(1)!r}: no such version in the package registry")
        raise BuildError(f"{what} failed: {_uv_error_summary(lines)}")

    def _run_uv(
        self, args: list[str], env: dict[str, str], log: Log, redact: Redactor, cwd: Path | None
    ) -> tuple[int, list[str]]:
        """Run uv, streaming its (scrubbed) output to `log` line by line; returns the exit code and
        the last lines of output."""
        return run_streamed([str(self.uv), *args, "--no-config"], env, log, redact, cwd)
