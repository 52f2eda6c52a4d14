"""Secrets: generating them, finding them in a Freqtrade config and the environment, and keeping them out
of logs.

Guarantees once ``install_redaction(values)`` has run in a process:

- every log record created afterwards (any logger, any handler, including Freqtrade's file, console and
  API log buffer) carries a message in which each value is replaced by ``[redacted]``; the message is
  formatted at creation (``record.args`` becomes ``None``) and an attached exception or stack is rendered
  to text and redacted too (``record.exc_info`` becomes ``None``, ``record.exc_text`` holds the text);
- an uncaught exception in the main thread or in a ``threading.Thread`` prints a redacted traceback.

Values shorter than ``MIN_SECRET_LEN`` characters are not redacted: replacing "1" or "true" everywhere
would wreck every log line while protecting nothing. Records created before the call are not touched.

Helios' own messages never contain a secret value in the first place (they name keys and files, never
contents); the redaction is the safety net for third-party code (ccxt, Freqtrade, aiohttp) and for
exceptions whose text we do not control.
"""

from __future__ import annotations

import json
import logging
import re
import secrets as _stdlib_secrets
import sys
import threading
import traceback
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

REDACTED = "[redacted]"

#: Shorter values are not redacted (see module docstring).
MIN_SECRET_LEN = 4

#: Bytes of randomness in each generated token: 256 bits, 43 URL-safe characters.
TOKEN_BYTES = 32

#: Config keys (and last parts of ``FREQTRADE__...`` variable names) whose values are secret, compared
#: lower-case with ``_`` and ``-`` removed, so ``api_key``, ``apiKey`` and ``API_KEY`` all match.
#: Covers Freqtrade's exchange credentials (also inside ``ccxt_config``), telegram, discord and webhook
#: URLs, and the API server's password, JWT key and websocket token.
SENSITIVE_KEYS = frozenset(
    {
        "key",
        "apikey",
        "secret",
        "password",
        "passphrase",
        "uid",
        "accountid",
        "privatekey",
        "walletaddress",
        "token",
        "wstoken",
        "jwtsecretkey",
        "webhookurl",
        "chatid",
    }
)
#: Sections in which every ``url`` is secret (webhook URLs embed their token).
URL_SECRET_SECTIONS = frozenset({"webhook", "discord"})

ENV_PREFIX = "FREQTRADE__"


def _norm(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def is_sensitive_key(name: str) -> bool:
    """True for a config key or environment-variable part whose value is a secret (``api_key``, ``SECRET``)."""
    return _norm(name) in SENSITIVE_KEYS


def generate_token(nbytes: int = TOKEN_BYTES) -> str:
    """A URL-safe random token from the OS's CSPRNG (``secrets.token_urlsafe``); 32 bytes -> 43 chars."""
    return _stdlib_secrets.token_urlsafe(nbytes)


@dataclass(frozen=True)
class ApiServerCredentials:
    """Freqtrade API server credentials. ``repr`` shows the username only, so printing or logging the
    object by accident does not leak the secrets."""

    username: str
    password: str = field(repr=False)
    jwt_secret_key: str = field(repr=False)
    ws_token: str = field(repr=False)

    @classmethod
    def generate(cls, username: str = "helios") -> ApiServerCredentials:
        """Fresh password, JWT signing key and websocket token, each ``TOKEN_BYTES`` random bytes."""
        return cls(username, generate_token(), generate_token(), generate_token())

    def values(self) -> tuple[str, str, str]:
        """The secret values (not the username)."""
        return (self.password, self.jwt_secret_key, self.ws_token)


def _leaf_values(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, (int, float)):
        yield str(value)
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _leaf_values(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaf_values(v)


def _config_secrets(node: Any, section: str, out: set[str]) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            key = str(key)
            if is_sensitive_key(key) or (_norm(key) == "url" and section in URL_SECRET_SECTIONS):
                out.update(_leaf_values(value))
            else:
                _config_secrets(value, _norm(key), out)
    elif isinstance(node, (list, tuple)):
        for item in node:
            _config_secrets(item, section, out)


def secret_values_from_config(
    config: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None
) -> frozenset[str]:
    """Every secret value in a Freqtrade config dict and in ``FREQTRADE__*`` environment variables.

    A value is secret when its key (anywhere in the config, e.g. ``exchange.secret``,
    ``exchange.ccxt_config.apiKey``, ``api_server.ws_token``, ``telegram.token``) or the last ``__`` part
    of the variable name (``FREQTRADE__EXCHANGE__KEY``) is in ``SENSITIVE_KEYS``. Numbers are included as
    text (a telegram ``chat_id``); values shorter than ``MIN_SECRET_LEN`` are left out.
    """
    found: set[str] = set()
    _config_secrets(config or {}, "", found)
    for name, value in (environ or {}).items():
        if name.startswith(ENV_PREFIX) and is_sensitive_key(name.rsplit("__", 1)[-1]):
            found.add(value)
    return frozenset(v for v in found if len(v) >= MIN_SECRET_LEN)


def _variants(value: str) -> set[str]:
    """The value as it may appear in text: verbatim, escaped by ``repr``/JSON, percent-encoded."""
    forms = {
        value,
        value.encode("unicode_escape").decode("ascii"),
        json.dumps(value)[1:-1],
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value, safe=""),
    }
    return {f for f in forms if len(f) >= MIN_SECRET_LEN}


class Redactor:
    """Replaces known secret values in text. Values only ever get added; safe to share between threads
    (the compiled pattern is swapped in whole)."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        """Also redact ``values`` (shorter than ``MIN_SECRET_LEN`` are ignored)."""
        with self._lock:
            new = {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LEN} - self._values
            if not new:
                return
            self._values = self._values | new
            forms = set().union(*(_variants(v) for v in self._values))
            # Longest first so that a secret containing another is replaced whole.
            alternation = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
            self._pattern = re.compile(alternation)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Redactor({len(self._values)} values)"

    def redact(self, text: str) -> str:
        """``text`` with every known value (and its escaped forms) replaced by ``[redacted]``."""
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(REDACTED, text)

    def redact_record(self, record: logging.LogRecord) -> logging.LogRecord:
        """Redact a log record in place (see module docstring for what changes) and return it."""
        if self._pattern is None:
            return record
        try:
            message = record.getMessage()
        except Exception:
            # A broken format string: logging would print msg and args in its error report; keep
            # neither raw.
            message = f"{record.msg} (unformattable log arguments dropped)"
        record.msg = self.redact(str(message))
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = self.redact(text)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return record


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record passing through (for handlers set up by hand; the
    process-wide ``install_redaction`` does not need it)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        self.redactor.redact_record(record)
        return True


_redactor = Redactor()
_installed = False
_install_lock = threading.Lock()


def install_redaction(values: Iterable[str]) -> Redactor:
    """Redact ``values`` from every log record and uncaught-exception report in this process from now on.

    Idempotent and cumulative: calling it again adds values, never removes any. Where Helios sets up
    logging it calls ``install_redaction(secret_values_from_config(config, os.environ))``.
    Returns the process-wide ``Redactor``.
    """
    global _installed
    _redactor.add(values)
    with _install_lock:
        if _installed:
            return _redactor
        _installed = True
        base_factory = logging.getLogRecordFactory()

        def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return _redactor.redact_record(base_factory(*args, **kwargs))

        logging.setLogRecordFactory(redacting_factory)

        base_excepthook = sys.excepthook

        def redacting_excepthook(exc_type: Any, exc: Any, tb: Any) -> None:
            if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
                base_excepthook(exc_type, exc, tb)
                return
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            sys.stderr.write(_redactor.redact(text))

        sys.excepthook = redacting_excepthook

        def redacting_thread_hook(hook_args: Any) -> None:
            if hook_args.exc_type is SystemExit:
                return
            name = hook_args.thread.name if hook_args.thread is not None else "?"
            text = "".join(traceback.format_exception(hook_args.exc_type, hook_args.exc_value, hook_args.exc_traceback))
            sys.stderr.write(_redactor.redact(f"Exception in thread {name}:\n{text}"))

        threading.excepthook = redacting_thread_hook
    return _redactor
