"""Outside text (whatever Cekura, a bot start URL or the bot's log said): decoded once at
the boundary, then made inert for each channel it reaches, the way ``_redact`` is the one
place for secrets.

The boundary: ``loads`` reads every outside JSON body (Cekura's answers, a bot start URL's);
a lone surrogate (valid JSON, what a model emits when it cuts an emoji in half) or invalid
UTF-8 becomes U+FFFD there, so no later stage can fail to encode it. Bytes decoded with
``errors="replace"`` (the bot's log, the xdist run log) hold no surrogate; ``clean`` is for
a string of any other origin.

The channels, and the order every output follows: redact (a secret is still whole), cap
(``cap``: "… N more characters"), then the channel's function:

- ``plain``: stdout, stderr, the terminal, pytest's failure text (longrepr, short summary,
  JUnit): control characters and escape sequences shown as visible escapes (``\\x1b``),
  a bare CR too; no line the GitHub Actions runner reads as a workflow command (a line
  that starts with ``::`` after whitespace, ``##[`` anywhere): a zero-width space goes
  between the two characters. ``one_line`` also turns newlines and tabs into spaces.
- ``markdown_inert``: the step summary and the PR comment, on top of their Markdown
  escaping: no @mention or team ping, no ``#1`` / ``org/repo#1`` / ``GH-1`` reference.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

REPLACEMENT = "\ufffd"
# Characters of one outside string, by channel (a run's error message, an explanation, a
# transcript turn, a bot log line).
LINE_LIMIT = 2_000  # one line of stdout, the terminal, pytest's failure text, JUnit
FAILURE_LIMIT = 20_000  # a whole failure text (every reason of a case, its transcript tail)
REPORT_LIMIT = 100_000  # one string of the JSON report (the full text is kept up to this)

_ZWSP = "\u200b"
_SURROGATE = re.compile("[\ud800-\udfff]")
# A JSON escape of a surrogate (``\\ud800``): a body without one cannot hold a lone one.
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
# C0 but tab and newline, DEL, C1, line/paragraph separators, bidirectional overrides.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_COMMAND = re.compile(r"^(\s*):(?=:)", re.M)  # ``::`` after whitespace: a workflow command
# A mention or team ping, ``#1`` (``org/repo#1`` too, not an entity such as ``&#124;``:
# escaped text has no other ``&#``), ``GH-1`` (``GH\\-1`` escaped).
_INERT = re.compile(r"@(?=[\w-])|(?<!&)#(?=\d)|(?<!\w)GH(?=\\?-\d)", re.I)

_T = TypeVar("_T")


# -- the boundary --------------------------------------------------------------------------


def clean(text: str) -> str:
    """``text`` with every lone surrogate as U+FFFD (``text`` itself when it has none)."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub(REPLACEMENT, text)


def clean_tree(value: _T) -> _T:
    """A JSON value with every string (keys too) ``clean``."""
    cleaned: Any = value
    if isinstance(value, str):
        cleaned = clean(value)
    elif isinstance(value, dict):
        cleaned = {clean_tree(k): clean_tree(v) for k, v in value.items()}
    elif isinstance(value, list):
        cleaned = [clean_tree(v) for v in value]
    return cleaned  # type: ignore[no-any-return]


def loads(data: bytes | str) -> Any:
    """Outside JSON: ``json.loads``, with lone surrogates as U+FFFD (a walk over the value
    only when the text escapes a surrogate at all). Raises ValueError (nested too deeply
    too)."""
    if isinstance(data, bytes | bytearray):  # invalid UTF-8 becomes U+FFFD too
        data = data.decode("utf-8", "replace").removeprefix("\ufeff")
    text = data
    try:
        value = json.loads(text)
        if _ESCAPED_SURROGATE.search(text) is None:  # decoded text holds no raw surrogate
            return value
        return clean_tree(value)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


# -- every channel -------------------------------------------------------------------------


def cap(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, its end saying how many were left
    out ("… 12,345 more characters"); ``text`` itself when it fits (so capping twice
    changes nothing)."""
    if len(text) <= limit:
        return text
    reserve = len(f"… {len(text):,} more characters")
    if reserve > limit:  # no room to say it (no channel's limit is this small)
        return text[:limit]
    keep = limit - reserve
    return f"{text[:keep]}… {len(text) - keep:,} more characters"


def cap_tree(value: _T, limit: int = REPORT_LIMIT) -> _T:
    """A JSON value with every string ``cap``-ped (the JSON report)."""
    capped: Any = value
    if isinstance(value, str):
        capped = cap(value, limit)
    elif isinstance(value, dict):
        capped = {k: cap_tree(v, limit) for k, v in value.items()}
    elif isinstance(value, list | tuple):
        capped = [cap_tree(v, limit) for v in value]
    return capped  # type: ignore[no-any-return]


_NAMED = {"\r": "\\r", "\x0b": "\\v", "\x0c": "\\f", "\x00": "\\0"}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, one_line: bool = False) -> str:
    """Control characters as visible escapes (``\\x1b``, a bare CR as ``\\r``); CRLF is a
    newline. ``one_line``: newlines and tabs as spaces too."""
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    if one_line and ("\n" in text or "\t" in text):
        text = text.replace("\n", " ").replace("\t", " ")
    if text.isprintable() or _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(_visible, text)


def no_commands(text: str) -> str:
    """No line of ``text`` read as a workflow command by the Actions runner: a zero-width
    space after a line's leading ``:`` and inside every ``##[``. Lines split on newlines
    only: ``visible`` has already made every other line break visible."""
    if "::" in text:
        text = _COMMAND.sub(lambda m: m.group(1) + ":" + _ZWSP, text)
    if "##[" in text:
        text = text.replace("##[", "#" + _ZWSP + "#[")
    return text


def plain(text: str, one_line: bool = False, limit: int = FAILURE_LIMIT) -> str:
    """``text`` for stdout, stderr, the terminal, pytest's failure text and JUnit: cut to
    ``limit`` characters, each line to ``LINE_LIMIT`` (before control characters become
    their longer visible escapes), no workflow command. Outside text passes
    the redactor first."""
    text = cap(text, limit)
    if len(text) > LINE_LIMIT and not one_line:
        text = "\n".join(cap(line, LINE_LIMIT) for line in text.split("\n"))
    elif one_line:
        text = cap(text, min(limit, LINE_LIMIT))
    return no_commands(visible(text, one_line))


# -- Markdown channels ---------------------------------------------------------------------


def _broken(match: re.Match[str]) -> str:
    return match.group() + _ZWSP


def markdown_inert(text: str) -> str:
    """No @mention or team ping and no cross-reference in text GitHub renders: a zero-width
    space after ``@`` and ``#`` (and inside ``GH-1``). HTML and Markdown syntax are the
    caller's escaping (``_markdown``), before this."""
    if "@" in text or "#" in text or "-" in text:
        text = _INERT.sub(_broken, text)
    return text
