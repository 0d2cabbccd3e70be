"""Keeps secrets (the API key, room tokens) out of everything the plugin writes.

Under pytest-xdist every process must mask every secret any process of the session learns
(a worker's room hook makes a token; the controller writes the JUnit file, the report and
the step summary; another worker judges a run whose error echoes the token). The secrets are
shared through one append-only file, mode 0600, in the session's shared directory (itself
0700, on the controller's machine, removed when the session ends): a process appends a
secret the moment it learns it, before any request that carries it leaves, and every
process reads what was appended since its last look before it masks anything. A hash would
not do (masking needs the value) and the xdist report channel would put secrets into test
reports, which other plugins serialize.

The file never holds a secret in clear: what a killed session leaves in the temporary
directory would outlive it. Each line is sealed with the session's key (random, made by
the controller, handed to its workers in their start-up input over xdist's pipe: never on
disk): a random nonce, the secret XORed with a keystream of keyed BLAKE2b blocks (a PRF in
counter mode), and a tag that rejects a line this session did not write.

Rooms from a provider bring a token per run, so a suite can know tens of thousands of
secrets. A text is then masked in one pass over it, not one search per secret: at each
position, one lookup of its next four characters; where secrets start with those, one
lookup per length they come in (Daily's tokens share their first few dozen characters).
With a few secrets, one search per secret is faster, and used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"
# Shorter values would mask ordinary words; real keys and tokens are far longer.
_MIN_SECRET_LEN = 4
_TOKEN_KEYS = frozenset({"t", "token"})
# One search per secret costs about (_PASS_COST + characters) units a secret; one pass over
# the text about _PASS_COST units a character (measured: ~0.14 ns a character searched, ~100 ns
# a Python-level step).
_PASS_COST = 700


def _longest_first(secret: str) -> int:
    return -len(secret)


# Secrets by their first _MIN_SECRET_LEN characters: their lengths, longest first, and the
# secrets of each length. The tuple is replaced, never changed in place, and a set is
# published only once filled (other threads mask while one learns).
_Bucket = tuple[tuple[int, ...], dict[int, set[str]]]


_NONCE = 16
_TAG = 16
_BLOCK = 64  # BLAKE2b's largest digest


def _keystream(key: bytes, nonce: bytes, size: int) -> bytes:
    blocks = (
        hashlib.blake2b(nonce + i.to_bytes(4, "big"), key=key, digest_size=_BLOCK).digest()
        for i in range(-(-size // _BLOCK))
    )
    return b"".join(blocks)[:size]


def _xor(data: bytes, stream: bytes) -> bytes:
    mixed = int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")
    return mixed.to_bytes(len(data), "big")


def _tag(key: bytes, sealed: bytes) -> bytes:
    return hashlib.blake2b(sealed, key=key, digest_size=_TAG, person=b"cekura-tag").digest()


def seal(key: bytes, secret: str) -> bytes:
    """One line of the shared file: ``secret`` unreadable without ``key``."""
    data = secret.encode("utf-8", "surrogatepass")
    nonce = os.urandom(_NONCE)
    sealed = nonce + _xor(data, _keystream(key, nonce, len(data)))
    return base64.b64encode(sealed + _tag(key, sealed)) + b"\n"


def unseal(key: bytes, line: bytes) -> str | None:
    """The secret of a line ``seal`` wrote with ``key``; None for any other line."""
    try:
        raw = base64.b64decode(line.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    sealed, tag = raw[:-_TAG], raw[-_TAG:]
    if len(sealed) < _NONCE or not hmac.compare_digest(tag, _tag(key, sealed)):
        return None
    nonce, body = sealed[:_NONCE], sealed[_NONCE:]
    data = _xor(body, _keystream(key, nonce, len(body)))
    return data.decode("utf-8", "surrogatepass")


class Redactor:
    """The set of secret strings seen in this process, and the one function that hides them."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._by_prefix: dict[str, _Bucket] = {}
        self._ordered: tuple[str, ...] | None = ()  # all, longest first; None: sort again
        self._lock = threading.Lock()
        self._shared: Path | None = None
        self._key = b""  # the session's key for the shared file
        self._read = 0  # bytes of the shared file already read
        self._fd: int | None = None  # the shared file, open for reading (fstat is cheap)
        self._urls: set[str] = set()  # URLs whose secrets were added (most cases share one)

    def share(self, path: Path, key: bytes) -> None:
        """Share secrets with the other processes of the session through ``path``, sealed
        with ``key`` (see the module docstring): what this process knows is appended now,
        later secrets as they come."""
        with self._lock:
            self._shared, self._key = path, key
            known = sorted(self._secrets)
        self._append(known)
        self._refresh()

    def _append(self, secrets: list[str]) -> None:
        if self._shared is None or not secrets:
            return
        data = b"".join(seal(self._key, secret) for secret in secrets)
        try:
            fd = os.open(self._shared, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError:
            return
        try:
            os.write(fd, data)  # one write: appends of other processes do not interleave
        finally:
            os.close(fd)

    def _refresh(self) -> None:
        """Learn what the other processes appended since the last look (one fstat)."""
        shared = self._shared
        if shared is None:
            return
        try:
            if self._fd is None:
                with self._lock:
                    if self._fd is None:
                        self._fd = os.open(shared, os.O_RDONLY)
            size = os.fstat(self._fd).st_size
        except OSError:
            return
        if size <= self._read:
            return
        with self._lock:
            try:
                chunk = os.pread(self._fd, size - self._read, self._read)
            except OSError:
                return
            whole = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
            self._read += len(whole)
            for line in whole.splitlines():
                secret = unseal(self._key, line)
                if secret is not None and len(secret) >= _MIN_SECRET_LEN:
                    self._learn(secret)

    def _learn(self, secret: str) -> bool:
        """Know ``secret`` and its escaped forms (the caller holds the lock); True if new."""
        new = secret not in self._secrets
        for form in _escaped(secret):
            if form in self._secrets:
                continue
            self._secrets.add(form)
            prefix, size = form[:_MIN_SECRET_LEN], len(form)
            lengths, by_length = self._by_prefix.get(prefix, ((), {}))
            if size in by_length:
                by_length[size].add(form)
            else:
                by_length[size] = {form}
                self._by_prefix[prefix] = (
                    tuple(sorted((*lengths, size), reverse=True)),
                    by_length,
                )
            self._ordered = None
        return new

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= _MIN_SECRET_LEN:
            with self._lock:
                new = self._learn(secret)
            if new:
                self._append([secret])

    def add_url(self, url: str | None) -> None:
        """The secrets a URL carries: a password (``https://user:pass@host``) and a Daily
        meeting token in its query (``?t=…``, ``token=…``)."""
        if not url or url in self._urls:
            return
        self._urls.add(url)
        if "@" not in url and "?" not in url:
            return  # no credentials and no query: nothing secret to learn
        try:
            parts = urlsplit(url)
            # The password; or the user when there is none (https://TOKEN@host): a user
            # beside a password is a name, masking it would mask ordinary words.
            credentials = [parts.password or parts.username]
        except ValueError:
            return
        for value in credentials:
            self.add(value)
            self.add(unquote(value) if value else None)
        for key, value in parse_qsl(parts.query):
            if key.lower() in _TOKEN_KEYS:
                self.add(value)

    def close(self) -> None:
        """Stop reading the shared file (the session is over)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __bool__(self) -> bool:
        self._refresh()
        return bool(self._secrets)

    def __call__(self, text: str) -> str:
        self._refresh()
        return self._mask(text)

    def _mask(self, text: str) -> str:
        """``text`` with every secret replaced by ``MASK``, longest first (a secret that
        contains another is masked whole); ``text`` itself when none occurs in it."""
        count = len(self._secrets)
        if count * (_PASS_COST + len(text)) > _PASS_COST * len(text):
            return self._mask_in_one_pass(text)
        ordered = self._ordered
        if ordered is None:
            with self._lock:
                ordered = self._ordered = tuple(sorted(self._secrets, key=_longest_first))
        for secret in ordered:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def _mask_in_one_pass(self, text: str) -> str:
        """Left to right: at each position, the longest secret that starts there."""
        by_prefix, width = self._by_prefix, _MIN_SECRET_LEN
        parts: list[str] = []
        start = i = 0
        last = len(text) - width
        while i <= last:
            bucket = by_prefix.get(text[i : i + width])
            if bucket is not None:
                lengths, by_length = bucket
                for size in lengths:
                    if text[i : i + size] in by_length[size]:
                        parts += (text[start:i], MASK)
                        i = start = i + size
                        break
                else:
                    i += 1
            else:
                i += 1
        if not parts:
            return text
        parts.append(text[start:])
        return "".join(parts)

    def tree(self, value: _T) -> _T:
        """A JSON-like value (dicts, lists, strings) with every string masked: masking
        before any escaping (JSON, Markdown, XML), where a secret is still whole. A copy
        when something was masked; the value itself when no secret occurs in it (checked
        on its JSON text, where each secret shows in its JSON-escaped form, also known)."""
        self._refresh()
        if not self._secrets:
            return value
        try:
            text = _ENCODER.encode(value)
        except (TypeError, ValueError):
            return mask_tree(value, self._mask)
        if self._mask(text) is text:
            return value
        return mask_tree(value, self._mask)  # refreshed once above, not once per string


_T = TypeVar("_T")
_ENCODER = json.JSONEncoder(default=repr)  # json.dumps(default=...) builds one per call


def mask_tree(value: _T, redact: Callable[[str], str]) -> _T:
    """A copy of a JSON-like value with every string (keys too) passed through ``redact``."""
    masked: Any = value
    if isinstance(value, str):
        masked = redact(value)
    elif isinstance(value, dict):
        masked = {mask_tree(k, redact): mask_tree(v, redact) for k, v in value.items()}
    elif isinstance(value, list | tuple):
        masked = type(value)(mask_tree(v, redact) for v in value)
    return masked  # type: ignore[no-any-return]


def mask_debug_trace(redactor: Redactor, tracer: Any) -> None:
    """Mask secrets in what ``--debug`` writes (pluggy's tracer prints every hook call's
    arguments and results: rooms, entries, runs). The tracer keeps its writer in
    ``_writer``; wrapping it is the one way to filter the trace."""
    root = getattr(tracer, "root", None)
    writer = getattr(root, "_writer", None)
    if root is None or writer is None or getattr(writer, "cekura_masked", False):
        return

    def masked(text: str) -> None:
        writer(redactor(text))

    masked.cekura_masked = True  # type: ignore[attr-defined]
    root.setwriter(masked)


def _escaped(secret: str) -> set[str]:
    """A secret and the forms escaping gives it (Python repr, JSON, XML, Markdown tables):
    masking happens before escaping, but text escaped elsewhere (a repr in a --debug trace,
    a JSON body in a log) must not show it either."""
    forms = {
        secret,
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        html.escape(secret),
        secret.replace("|", "\\|"),
    }
    return {form for form in forms if len(form) >= _MIN_SECRET_LEN}


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
