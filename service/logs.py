"""Structured logging with personal data redacted from every line."""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_CONFIGURED = {"done": False}


class RedactingFilter(logging.Filter):
    """Runs the PII detectors over the formatted message: no card, e-mail or phone in a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from triage.pii import redact

        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the line
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


# Characters str.splitlines() breaks on that json.dumps(ensure_ascii=False) leaves raw.
_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_LINE_BREAKS_RE = re.compile("[\x85\u2028\u2029]")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, whatever the message holds (Unicode line separators are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
               "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        if record.exc_text:
            doc["exc"] = record.exc_text
        return _LINE_BREAKS_RE.sub(lambda m: _LINE_BREAKS[m.group()], json.dumps(doc, ensure_ascii=False))


def configure_logging(settings) -> None:  # noqa: ANN001
    if _CONFIGURED["done"]:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if settings.log_json
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # alembic tells of each plug-in and dialect on every start; `db upgrade` says what it did itself
    for noisy in ("aiosqlite", "sqlalchemy.engine", "asyncio", "urllib3", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _CONFIGURED["done"] = True
