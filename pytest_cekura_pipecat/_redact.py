"""Keeps secrets (the API key, room tokens) out of everything the plugin writes."""

from __future__ import annotations

import logging
import threading
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

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= _MIN_SECRET_LEN:
            with self._lock:
                self._secrets.add(secret)

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
