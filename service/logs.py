"""Structured logging with personal data and secure links redacted from every line."""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_CONFIGURED = {"done": False}

# The ids the code itself writes into log lines, exactly as it makes them: a Redis stream entry id
# (``<ms>-<seq>``), a message key (``<platform>:<id>`` and the suffixes of service.pipeline.ingest_key,
# or a later stage's ``m:<mention id>``). A 19-digit tweet id or an entry id's 13-digit time passes
# the card check, and a plain-text line carries no structured fields: redacted, the id was lost.
_ID = re.compile(r"\d{1,20}-\d{1,20}|[a-z][a-z0-9_]{0,31}(?::[A-Za-z0-9_.+-]{1,200}){1,8}")
_HOLD = "\ue000{}\ue001"  # stands for an id while the line is redacted (private-use: no detector spans it)


class LogId(str):
    """An id passed as a log argument (:func:`log_id`), which the redactor leaves whole."""


def log_id(value: object) -> str:
    """``value`` as a log argument the redactor leaves whole when it has the exact form of an id the
    code makes (:data:`_ID`); anything else is an ordinary argument, redacted as usual. Only an
    argument is exempt, never text in the message: a card number a customer wrote (in a reason, an
    exception) is redacted wherever it stands."""
    text = str(value)
    return LogId(text) if _ID.fullmatch(text) else text


def _clean(text: str) -> str:
    """Secure links masked (a log line must not open a customer's private channel), then personal
    data redacted: the mask sees each token whole, whatever a detector might match inside one."""
    from escalation.links import shown_without_links
    from triage.pii import redact

    return redact(shown_without_links(text))


class RedactingFilter(logging.Filter):
    """Runs the secure-link mask and the PII detectors over the formatted message and its traceback:
    no ``/secure/<token>``, card, e-mail or phone in a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        held: dict[str, str] = {}
        if isinstance(record.args, tuple) and any(type(a) is LogId for a in record.args):
            # each id stands aside while the line is redacted, and comes back whole after
            record.args = tuple(_hold(a, held) if type(a) is LogId else a for a in record.args)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the line
            message = str(record.msg)
        message = _clean(message)
        for mark, value in held.items():
            message = message.replace(mark, value)
        record.msg, record.args = message, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = _clean(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def _hold(value: str, held: dict[str, str]) -> str:
    mark = _HOLD.format(chr(0xE100 + len(held)))
    held[mark] = str(value)
    return mark


# Characters str.splitlines() breaks on that json.dumps(ensure_ascii=False) leaves raw.
_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_LINE_BREAKS_RE = re.compile("[\x85\u2028\u2029]")


# Structured fields a log call may add with ``extra={...}`` and the JSON lines then carry as keys of
# their own. Only these: they hold ids and counts, never personal data (a message key is the
# platform's post id or ours). Other extras are left out — aiohttp's access log, for one, passes the
# client address and the request line, which may hold a /secure/<token> link.
FIELDS = {
    "stage": str, "message_key": str, "entry_id": str, "dead_letter_id": str, "topic": str,
    "attempt": int, "batch_size": int, "dead_letter": bool, "error_type": str, "held_seconds": float,
}


def fields_of(record: logging.LogRecord) -> dict[str, object]:
    """The record's structured fields (see FIELDS), each of its declared type or left out."""
    out: dict[str, object] = {}
    for name, kind in FIELDS.items():
        value = getattr(record, name, None)
        if isinstance(value, kind) and (kind is not int or not isinstance(value, bool)):
            out[name] = value[:300] if isinstance(value, str) else value
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line, whatever the message holds (Unicode line separators are escaped);
    the structured fields of FIELDS follow ``msg`` as keys of their own."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
               "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        doc.update({k: v for k, v in fields_of(record).items() if k not in doc})
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
