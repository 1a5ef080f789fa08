"""The agent's own logs: one JSON object per event on stderr, with secrets masked."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else on a record came from `extra=` and is a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

# A field named like a secret is never written, whatever its value (a *_file field holds a
# path, which is worth logging). In free text, mask what a URL's userinfo or an Authorization
# header value would carry: an error message can quote either.
_SECRET_FIELD = re.compile(r"password|passwd|token|secret|authorization|api_?key|credential", re.I)
_SECRET_TEXT = re.compile(r"(?<=://)[^/\s@]+@"  # https://user:password@host
                          r"|(?<=bearer )[\w.~+/=-]{8,}"
                          r"|(?<=authorization: basic )[^\s)\]}\"',;]+", re.I)
REDACTED = "<redacted>"


def _mask(text: str) -> str:
    return _SECRET_TEXT.sub(lambda m: REDACTED + ("@" if m.group().endswith("@") else ""), text)


def _field(key: str, value: object) -> object:
    if _SECRET_FIELD.search(key) and not key.endswith(("_file", "_path")):
        return REDACTED
    if isinstance(value, str):
        return _mask(value)
    if isinstance(value, list | tuple):
        return [_mask(v) if isinstance(v, str) else v for v in value]
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _mask(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                event[key] = _field(key, value)
        if record.exc_info:
            event["exception"] = _mask(self.formatException(record.exc_info))
        # json.dumps escapes newlines: one event is always one line, even with a traceback.
        return json.dumps(event, default=lambda v: _mask(str(v)))


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore"):  # per-event chatter below warning
        logging.getLogger(noisy).setLevel(logging.WARNING)
