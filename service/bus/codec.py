"""A bus message as Redis stream fields, and back.

Key and payload are JSON text sent as UTF-8 with ``surrogatepass``, so every Python ``str``
survives the round trip: arbitrary Unicode, lone surrogates ("\\ud800"), NUL and control
characters, megabytes of text. (ASCII-escaped JSON cannot: it writes the two lone surrogates
"\\ud800\\udfff" exactly as the one character U+103FF, and reads them back as that character.)
Decoding is strict: anything that is not an entry we wrote raises :class:`CodecError`, so a
consumer can dead-letter a corrupted entry instead of crashing on it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from models import json_codec
from service.bus.base import DeadLetter

VERSION = "1"
KEY, PAYLOAD, ATTEMPTS, PUBLISHED, GROUP, VER = "k", "p", "a", "t", "g", "v"
_UNESCAPED = partial(json.dumps, ensure_ascii=False, separators=(",", ":"))  # what orjson leaves to json


class CodecError(ValueError):
    """A message that cannot be encoded (not JSON) or an entry that cannot be decoded."""


@dataclass(frozen=True)
class Message:
    key: str
    payload: dict[str, Any]
    attempts: int = 1
    published_at: float = 0.0  # epoch seconds of the first publish (kept across retries)
    group: str | None = None  # a retry copy is for its consumer group only, not the whole topic


def dumps_payload(payload: dict[str, Any]) -> str:
    """The payload as JSON text (unescaped, see above; orjson's where it reads back the same,
    :mod:`models.json_codec`); CodecError naming only the type at fault."""
    if not isinstance(payload, dict):
        raise CodecError(f"payload must be a dict, not {type(payload).__name__}")
    try:
        return json_codec.dumps(payload, _UNESCAPED)
    except (TypeError, ValueError, RecursionError) as exc:
        raise CodecError(f"payload is not JSON-serialisable: {exc}") from exc


def loads_payload(text: str | bytes) -> dict[str, Any]:
    """Inverse of :func:`dumps_payload`; CodecError on anything else."""
    try:
        payload = json_codec.loads(_text(text))
    except (ValueError, RecursionError) as exc:
        raise CodecError(f"payload is not valid JSON: {type(exc).__name__}") from exc
    if not isinstance(payload, dict):
        raise CodecError(f"payload must be a JSON object, not {type(payload).__name__}")
    return payload


def encode(key: str, payload: dict[str, Any], attempts: int = 1, published_at: float | None = None,
           group: str | None = None) -> dict[str, bytes]:
    """Stream fields of one message. ``published_at`` defaults to now (a first publish); ``group``
    marks a retry copy that only that consumer group must handle."""
    if not isinstance(key, str):
        raise CodecError(f"key must be a str, not {type(key).__name__}")
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise CodecError(f"attempts must be a positive int, not {attempts!r}")
    fields = {
        KEY: _json_bytes(key),
        PAYLOAD: wire(dumps_payload(payload)),
        ATTEMPTS: str(attempts).encode(),
        PUBLISHED: repr(float(time.time() if published_at is None else published_at)).encode(),
        VER: VERSION.encode(),
    }
    if group is not None:
        fields[GROUP] = _json_bytes(group)
    return fields


def wire(text: str) -> bytes:
    """Text as stored in Redis: UTF-8, lone surrogates as their 3-byte forms."""
    return text.encode("utf-8", "surrogatepass")


def _json_bytes(text: str) -> bytes:
    return wire(json.dumps(text, ensure_ascii=False))


def decode(fields: Mapping[Any, Any]) -> Message:
    """The message in a stream entry's fields (bytes or str); CodecError when it is not one."""
    try:
        f = {_text(k): v for k, v in fields.items()}
        key = json.loads(_text(f[KEY]))
        payload = loads_payload(f[PAYLOAD])
        attempts = int(_text(f.get(ATTEMPTS, "1")))
        published_at = float(_text(f.get(PUBLISHED, "0")))
        group = json.loads(_text(f[GROUP])) if GROUP in f else None
    except KeyError as exc:
        raise CodecError(f"missing field {exc.args[0]!r}") from exc
    except CodecError:
        raise
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise CodecError(f"malformed field: {type(exc).__name__}") from exc
    if not isinstance(key, str):
        raise CodecError(f"key must be a JSON string, not {type(key).__name__}")
    if group is not None and not isinstance(group, str):
        raise CodecError(f"group must be a JSON string, not {type(group).__name__}")
    if attempts < 1:
        raise CodecError(f"attempts must be positive, not {attempts}")
    if math.isnan(published_at) or published_at < 0:
        raise CodecError("published time is not a valid epoch time")
    return Message(key=key, payload=payload, attempts=attempts, published_at=published_at, group=group)


def encode_dead_letter(topic: str, group: str, entry_id: str, reason: str, msg: Message | None,
                       raw: Mapping[Any, Any] | None = None, error: str = "", failed_at: str | None = None
                       ) -> dict[Any, Any]:
    """Dead-letter stream fields. ``msg`` None: an undecodable entry, whose fields are kept byte for
    byte as ``raw:<field>`` so nothing is lost. ``key`` is a JSON string (keys may hold any text).
    ``failed_at`` (ISO 8601) defaults to now; a dead letter rewritten keeps its own."""
    fields: dict[Any, Any] = {
        "topic": topic, "group": group, "entry_id": entry_id,
        "reason": reason.encode("utf-8", "backslashreplace").decode("utf-8")[:2000],  # for people: valid UTF-8
        "failed_at": failed_at or datetime.now(UTC).isoformat(),
        "key": _json_bytes(msg.key) if msg else b"", "payload": wire(dumps_payload(msg.payload)) if msg else b"",
        "attempts": str(msg.attempts if msg else 1), "published_at": repr(msg.published_at if msg else 0.0)}
    if msg is None:
        fields["error"] = error
        fields.update({b"raw:" + _bytes(k): _bytes(v) for k, v in (raw or {}).items()})
    return fields


def decode_dead_letter(entry_id: str, raw: Mapping[Any, Any]) -> DeadLetter:
    """A dead-letter entry; never raises (a listing must show even odd entries). Entries whose message
    cannot be read carry ``extra["undecodable"]`` (why) and ``extra["raw"]`` (their fields as text)."""
    fields = {_bytes(k).decode("utf-8", "backslashreplace"): v for k, v in raw.items()}
    text = {k: _bytes(v).decode("utf-8", "backslashreplace") for k, v in fields.items()}  # for display
    extra: dict[str, Any] = {k: text[k] for k in ("group", "entry_id") if k in text}
    try:
        extra["published_at"] = float(text.get("published_at", "0"))
        key, payload = json.loads(_text(fields["key"])), loads_payload(fields["payload"])
        if not isinstance(key, str):
            raise CodecError("key is not a string")
    except (KeyError, ValueError, RecursionError) as exc:  # CodecError is a ValueError
        key, payload = "", {}
        extra["undecodable"] = text.get("error") or f"malformed dead-letter entry ({type(exc).__name__})"
        extra["raw"] = {k[4:]: v for k, v in text.items() if k.startswith("raw:")}
    try:
        attempts = int(text.get("attempts", "0"))
    except ValueError:
        attempts = 0
    return DeadLetter(id=entry_id, topic=text.get("topic", ""), key=key, payload=payload, attempts=attempts,
                      reason=text.get("reason", ""), failed_at=text.get("failed_at", ""), extra=extra)


def _bytes(value: Any) -> bytes:
    return bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else str(value).encode(
        "utf-8", "surrogatepass")


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:
            raise CodecError("field is not UTF-8 text") from exc
    if isinstance(value, str):
        return value
    raise CodecError(f"field of unexpected type {type(value).__name__}")
