"""Request headers on their way to a job: what the gateway reads, drops, keeps and adds.

Read: the caller's token (`X-Racetrack-Auth` header, else the cookie of that name), the tracing
id, the body framing. Dropped: the token header and cookie (other cookies stay), the caller's own
`X-Caller-Name` (only the gateway's decision names the caller), hop-by-hop headers (RFC 7230
§6.1: Connection and what it lists, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade,
Proxy-*), Host (the upstream's is written) and Expect (the gateway's server answered it).
Everything else passes unchanged. Values with CR, LF or NUL are refused, never forwarded.
"""

from __future__ import annotations

import re
from random import getrandbits

AUTH = b"x-racetrack-auth"
TRACING = b"x-request-tracing-id"
CALLER = b"x-caller-name"

_UUID4_BITS = 0x00000000000040008000000000000000  # version 4, RFC 4122 variant
_UUID4_MASK = 0xFFFFFFFFFFFF0FFF3FFFFFFFFFFFFFFF
_TRACING_ID = re.compile(rb"[\x21-\x7e]{1,128}")

_DROP, _TOKEN, _COOKIE, _TRACE, _LENGTH, _TRANSFER, _CONNECTION = range(7)
_SPECIAL: dict[bytes, int] = {
    AUTH: _TOKEN,
    b"cookie": _COOKIE,
    TRACING: _TRACE,
    CALLER: _DROP,
    b"content-length": _LENGTH,
    b"transfer-encoding": _TRANSFER,
    b"connection": _CONNECTION,
    b"keep-alive": _DROP,
    b"proxy-connection": _DROP,
    b"proxy-authorization": _DROP,
    b"te": _DROP,
    b"trailer": _DROP,
    b"upgrade": _DROP,
    b"host": _DROP,
    b"expect": _DROP,
}


def new_tracing_id() -> str:
    """A random UUID4 string (getrandbits: tracing ids need no secrecy, and it is fast)."""
    h = f"{getrandbits(128) & _UUID4_MASK | _UUID4_BITS:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class UnsafeHeader(Exception):
    pass


class CallerHeaders:
    """What one pass over the request's headers found."""

    __slots__ = ("chunked", "content_length", "kept", "token", "tracing_id")

    def __init__(self) -> None:
        self.token: str | None = None
        self.tracing_id = ""
        self.kept: list[tuple[bytes, bytes]] = []
        self.content_length = False
        self.chunked = False

    def lines(self, caller: str | None) -> bytes:
        """The header lines for the job: kept ones, the tracing id and the gateway's X-Caller-Name;
        UnsafeHeader when a name or value holds CR, LF or NUL (one line break per line, or none)."""
        out = [b"%s: %s\r\n" % pair for pair in self.kept]
        out.append(b"x-request-tracing-id: %s\r\n" % self.tracing_id.encode("ascii"))
        if caller:
            out.append(b"x-caller-name: %s\r\n" % caller.encode("utf-8"))
        block = b"".join(out)
        lines = len(out)
        if block.count(b"\n") != lines or block.count(b"\r") != lines or b"\x00" in block:
            raise UnsafeHeader("a header contains CR, LF or NUL")
        return block

    def pairs(self, caller: str | None) -> list[tuple[str, str]]:
        """The same as text pairs (for the WebSocket client)."""
        self.lines(caller)  # the same checks
        out = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self.kept]
        out.append(("x-request-tracing-id", self.tracing_id))
        if caller:
            out.append(("x-caller-name", caller.encode("utf-8").decode("latin-1")))
        return out


def scan(headers: list[tuple[bytes, bytes]], also_drop: frozenset[bytes] = frozenset()) -> CallerHeaders:
    """One pass over ASGI request headers (lower-case names). CR, LF and NUL are refused when the
    lines are written (`lines`, `pairs`): the server's parser refuses them first anyway."""
    found = CallerHeaders()
    kept = found.kept
    listed: list[bytes] | None = None
    cookie_token: str | None = None
    special = _SPECIAL
    for name, value in headers:
        kind = special.get(name)
        if kind is None:
            if name not in also_drop:
                kept.append((name, value))
        elif kind == _TOKEN:
            if value:
                found.token = value.decode("latin-1")
        elif kind == _COOKIE:
            value, token = strip_auth_cookie(value)
            if token and cookie_token is None:
                cookie_token = token
            if value:
                kept.append((name, value))
        elif kind == _TRACE:
            if _TRACING_ID.fullmatch(value):
                found.tracing_id = value.decode("ascii")
        elif kind == _LENGTH:
            found.content_length = True
            kept.append((name, value))
        elif kind == _TRANSFER:
            found.chunked = b"chunked" in value.lower()
        elif kind == _CONNECTION:
            tokens = [t.strip().lower() for t in value.split(b",")]
            listed = [t for t in tokens if t and t not in (b"close", b"keep-alive")] + (listed or [])
    if found.token is None:
        found.token = cookie_token
    if listed:
        # headers the caller declared hop-by-hop; the auth header and the framing stay handled above
        drop = set(listed) - {b"content-length"}
        found.kept = [(n, v) for n, v in kept if n not in drop]
    if not found.tracing_id:
        found.tracing_id = new_tracing_id()
    return found


def strip_auth_cookie(value: bytes) -> tuple[bytes, str | None]:
    """The Cookie header without `X-Racetrack-Auth` (any case), and that cookie's value."""
    if b"racetrack-auth" not in value.lower():
        return value, None
    token: str | None = None
    kept: list[bytes] = []
    for part in value.split(b";"):
        name, _, cookie = part.strip().partition(b"=")
        if name.strip().lower() == AUTH:
            if token is None and cookie.strip():
                token = cookie.strip().strip(b'"').decode("latin-1")
        elif part.strip():
            kept.append(part.strip())
    return b"; ".join(kept), token
