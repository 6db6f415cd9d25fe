"""Job paths: `/pub/job/{name}/{version}/{path}` parsed, checked and normalised.

The gateway decides on the normalised form and forwards exactly that form, so what was
authorised is what the job receives and nothing can address another job or the gateway itself:

- repeated slashes collapse (`//` → `/`); a trailing slash is kept (`/webview/` ≠ `/webview`);
- `.` and `..` segments are refused, also percent-encoded (`%2e%2e`), as are encoded slashes and
  backslashes (`%2F`, `%5C`), raw backslashes and control characters (CR, LF, NUL ...) anywhere
  in the path or the query;
- the name must be a DNS label and the version a plain token (`1.2.3`, `latest`, `1.x`);
- segments keep the caller's percent-encoding (`%3F` stays an encoded `?`), so the job decodes
  exactly what the caller sent.

The request target's authority (absolute-form `GET http://host/...`) never matters: the server
hands the gateway the path only and the upstream always comes from the registry.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import unquote, unquote_to_bytes

PREFIX = b"/pub/job/"

_NAME = re.compile(rb"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_VERSION = re.compile(rb"[0-9A-Za-z*][0-9A-Za-z.+*-]{0,63}")
# bytes that never belong in a request target we write upstream (the query is checked too)
_UNSAFE = re.compile(rb"[\x00-\x20\x7f-\xff\\#]")
_UNSAFE_DECODED = re.compile(rb"[\x00-\x1f\x7f/\\]")
# the common case: nothing to decode or collapse, no dot segments
_PLAIN = re.compile(
    rb"/pub/job/([a-z0-9-]+)/([0-9A-Za-z.+*-]+)((?:/[^/%.\\\x00-\x20\x7f-\xff][^/%\\\x00-\x20\x7f-\xff]*)*/?)"
)


class JobPath(NamedTuple):
    name: str
    version: str  # as requested: exact, `latest` or a wildcard
    rest: bytes  # the path inside the job, percent-encoded as sent: b"" or b"/..." (trailing / kept)
    endpoint: str  # `rest` decoded, "/" at least: what authorisation decides on

    def upstream_target(self, version: str, query: bytes) -> bytes:
        """The request target for the replica: `/pub/job/{name}/{version}{rest}[?query]`."""
        target = b"/pub/job/%s/%s%s" % (self.name.encode(), version.encode("ascii"), self.rest)
        return target + b"?" + query if query else target


class BadPath(Exception):
    """The path cannot be forwarded: `status` 400 (malformed or unsafe) or 404 (not a job path)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_job_path(raw_path: bytes, query: bytes = b"") -> JobPath:
    """Parse the raw (percent-encoded) path of a request under `/pub/job/`; BadPath when unsafe."""
    if query and _UNSAFE.search(query):
        raise BadPath(400, "the query string contains characters that are not allowed")
    plain = _PLAIN.fullmatch(raw_path)
    if plain is not None:
        name, version, rest = plain.groups()
        _check_name_version(name, version)
        endpoint = rest.decode("ascii") if rest else "/"
        return JobPath(name.decode("ascii"), version.decode("ascii"), rest, endpoint)
    return _parse_slow(raw_path)


def _parse_slow(raw_path: bytes) -> JobPath:
    if _UNSAFE.search(raw_path):
        raise BadPath(
            400, "the path contains characters that are not allowed (control characters, backslash)"
        )
    trailing = raw_path.endswith(b"/")
    segments = [s for s in raw_path.split(b"/") if s]  # collapses `//`
    if len(segments) < 3 or segments[0] != b"pub" or segments[1] != b"job":
        raise BadPath(404, "not a job path: expected /pub/job/{name}/{version}/{path}")
    if len(segments) < 4:
        raise BadPath(404, "the path names no job version: /pub/job/{name}/{version}/{path}")
    name, version, inner = segments[2], segments[3], segments[4:]
    _check_name_version(name, version)
    decoded: list[str] = []
    for segment in inner:
        plain = unquote_to_bytes(segment) if b"%" in segment else segment
        if plain in (b".", b".."):
            raise BadPath(400, "the path must not contain '.' or '..' segments")
        if _UNSAFE_DECODED.search(plain):
            raise BadPath(400, "the path must not contain encoded slashes, backslashes or control characters")
        decoded.append(unquote(segment.decode("ascii")) if b"%" in segment else segment.decode("ascii"))
    if inner:
        rest = b"/" + b"/".join(inner) + (b"/" if trailing else b"")
        endpoint = "/" + "/".join(decoded) + ("/" if trailing else "")
    else:
        rest = b"/" if trailing else b""
        endpoint = "/"
    return JobPath(name.decode("ascii"), version.decode("ascii"), rest, endpoint)


def _check_name_version(name: bytes, version: bytes) -> None:
    if _NAME.fullmatch(name) is None:
        raise BadPath(404, "not a job name: job names are DNS labels (a-z, 0-9, '-')")
    if _VERSION.fullmatch(version) is None or version in (b".", b".."):
        raise BadPath(404, "not a job version: an exact version, 'latest' or a wildcard such as '1.x'")
