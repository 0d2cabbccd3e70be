"""TOML written by the plugin (``pull``): the few value kinds a ``[[case]]`` table needs,
spelled per the TOML 1.0 specification. The runtime has no TOML writer of its own, and the
lines written here land in a file people review, so they stay short and plain."""

from __future__ import annotations

import re
from collections.abc import Sequence

Value = str | int | bool | Sequence[str]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def string(text: str) -> str:
    """A basic string: quotes, backslashes and control characters escaped; a lone surrogate
    (no Unicode scalar value, so not writable) becomes U+FFFD."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\uFFFD")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else string(name)


def value(item: Value) -> str:
    if isinstance(item, bool):  # before int: a bool is an int
        return "true" if item else "false"
    if isinstance(item, int):
        return str(item)
    if isinstance(item, str):
        return string(item)
    return "[" + ", ".join(string(part) for part in item) + "]"


def pair(name: str, item: Value) -> str:
    return f"{key(name)} = {value(item)}"


def table(header: str, fields: Sequence[tuple[str, Value]]) -> str:
    """An array-of-tables entry: ``[[header]]`` and one ``key = value`` line per field."""
    return "".join([f"[[{key(header)}]]\n", *(pair(k, v) + "\n" for k, v in fields)])
