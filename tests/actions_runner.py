"""How the GitHub Actions runner reads a step's output, for tests: which lines it takes
for workflow commands.

The runner reads the output line by line (a line ends at LF, CRLF or a bare CR); a line
is a command when, its leading whitespace trimmed, it starts with ``::``, or (the legacy
form) when ``##[`` occurs anywhere in it. Python's ``str.isspace`` counts more characters
as whitespace than .NET's ``TrimStart``: a superset, so this finds every command the
runner would, and maybe more."""

from __future__ import annotations

import re

_LINE_END = re.compile(r"\r\n|\n|\r")
_ANNOTATION = re.compile(r"^::(error|warning|notice)( [^:]*)?::")


def lines(text: str) -> list[str]:
    """The output's lines as the runner splits them."""
    return _LINE_END.split(text)


def command(line: str) -> str | None:
    """The command a line is to the runner (from its ``::`` or ``##[``), None if none."""
    trimmed = line.lstrip()
    if trimmed.startswith("::"):
        return trimmed
    start = line.find("##[")
    return None if start < 0 else line[start:]


def commands(text: str) -> list[str]:
    """Every line of ``text`` the runner reads as a workflow command."""
    return [found for line in lines(text) if (found := command(line)) is not None]


def annotation(found: str) -> tuple[str, dict[str, str], str] | None:
    """An annotation command (``::error file=x,line=1::message``) as (kind, properties,
    message); None for any other command."""
    match = _ANNOTATION.match(found)
    if match is None:
        return None
    props = dict(
        part.split("=", 1) for part in (match.group(2) or "").strip().split(",") if "=" in part
    )
    return match.group(1), props, found[match.end() :]
