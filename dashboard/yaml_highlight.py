"""Manifest YAML with its parts marked for colour (keys, strings, numbers, literals, comments),
line by line; everything is escaped, so any text is safe to show."""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_KEY = re.compile(r"^(\s*)(- )?([^\s#'\"][^:#]*?|'[^']*'|\"[^\"]*\")(:)(\s|$)")
_ITEM = re.compile(r"^(\s*)(- )")
_NUMBER = re.compile(r"^[-+]?(\d[\d_]*)(\.\d+)?([eE][-+]?\d+)?$")
_LITERALS = {"true", "false", "yes", "no", "on", "off", "null", "~"}


def _span(kind: str, text: str) -> Markup:
    return Markup('<span class="y-{}">{}</span>').format(kind, text)


def _comment_start(text: str) -> int:
    """Index of a `#` comment outside quotes, or -1."""
    quote = None
    for index, char in enumerate(text):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or text[index - 1] in " \t"):
            return index
    return -1


def _value(text: str) -> Markup:
    stripped = text.strip()
    if not stripped:
        return escape(text)
    lead = text[: len(text) - len(text.lstrip())]
    trail = text[len(text.rstrip()) :]
    if stripped[0] in "'\"":
        kind = "str"
    elif _NUMBER.match(stripped):
        kind = "num"
    elif stripped.lower() in _LITERALS or stripped[0] in "|>&*!":
        kind = "lit"
    else:
        kind = "str"
    return escape(lead) + _span(kind, stripped) + escape(trail)


def _line(line: str) -> Markup:
    comment_at = _comment_start(line)
    code, comment = (line, "") if comment_at < 0 else (line[:comment_at], line[comment_at:])
    out = Markup("")
    match = _KEY.match(code)
    if match:
        indent, dash, key, colon, space = match.groups()
        out += escape(indent)
        if dash:
            out += _span("dash", dash.rstrip()) + " "
        out += _span("key", key) + escape(colon) + escape(space) + _value(code[match.end() :])
    elif item := _ITEM.match(code):
        out += escape(item.group(1)) + _span("dash", "-") + " " + _value(code[item.end() :])
    else:
        out += _value(code) if code.strip() else escape(code)
    if comment:
        out += _span("comment", comment)
    return out


def highlight_yaml(text: str | None) -> Markup:
    if not text:
        return Markup("")
    return Markup("\n").join(_line(line) for line in text.splitlines())
