"""Keeps secrets (the API key, room tokens) out of everything the plugin writes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

MASK = "***"
# Shorter values would mask ordinary words; real keys and tokens are far longer.
_MIN_SECRET_LEN = 4
_TOKEN_KEYS = frozenset({"t", "token"})


class Redactor:
    """The set of secret strings seen in this process, and the one function that hides them."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        self._journal: Path | None = None
        self._read = 0

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= _MIN_SECRET_LEN:
            with self._lock:
                if secret in self._secrets:
                    return
                self._secrets.add(secret)
                self._write([secret])

    def share(self, journal: Path) -> None:
        """Share secrets with the session's other processes (pytest-xdist) through
        ``journal`` (owner-only): every secret this process knows or learns is appended, and
        :meth:`learn` reads the others'. A room token from a provider is known only where it
        was fired, but any worker may print a run that echoes it."""
        with self._lock:
            self._journal = journal
            self._write(sorted(self._secrets))

    def learn(self) -> None:
        """Add the secrets the session's other processes appended to the journal."""
        journal = self._journal
        if journal is None:
            return
        try:
            with journal.open("rb") as file:
                file.seek(self._read)
                data = file.read()
        except OSError:
            return
        complete = data[: data.rfind(b"\n") + 1]
        with self._lock:
            self._read += len(complete)
            for line in complete.splitlines():
                with contextlib.suppress(ValueError):
                    secret = json.loads(line)
                    if isinstance(secret, str) and len(secret) >= _MIN_SECRET_LEN:
                        self._secrets.add(secret)

    def _write(self, secrets: list[str]) -> None:
        if self._journal is None or not secrets:
            return
        data = "".join(json.dumps(secret) + "\n" for secret in secrets).encode()
        with contextlib.suppress(OSError):
            fd = os.open(self._journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)

    def add_url(self, url: str | None) -> None:
        """The secrets a URL carries: a password (``https://user:pass@host``) and a Daily
        meeting token in its query (``?t=…``, ``token=…``)."""
        if not url:
            return
        try:
            parts = urlsplit(url)
            self.add(parts.password)
        except ValueError:
            return
        for key, value in parse_qsl(parts.query):
            if key.lower() in _TOKEN_KEYS:
                self.add(value)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __call__(self, text: str) -> str:
        if not self._secrets:
            return text
        # Longest first, so a secret that contains another is masked whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, MASK)
        return text


class RecordFactory:
    """A log-record factory that masks secrets in every record of every logger (httpx and
    httpcore debug logs included), installed for the session and removed after it."""

    def __init__(self, redactor: Redactor) -> None:
        self._redact = redactor
        self._previous = logging.getLogRecordFactory()

    def __call__(self, *args: object, **kwargs: object) -> logging.LogRecord:
        record = self._previous(*args, **kwargs)
        if not self._redact:
            return record  # nothing to hide yet: keep logging free for everyone else
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's problem, not ours
            return record
        clean = self._redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return record

    def install(self) -> None:
        logging.setLogRecordFactory(self)

    def uninstall(self) -> None:
        if logging.getLogRecordFactory() is self:
            logging.setLogRecordFactory(self._previous)
