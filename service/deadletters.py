"""Dead letters as an operator sees them, shared by `socialcare deadletter` (Redis bus) and the
console's /admin/deadletters page (either bus, through the web process's own): one row format, one
way of choosing and retrying them, so the two cannot drift apart.

Payloads can hold personal data (whole posts, handles): rows leave them out unless asked, and the
console shows them only through :func:`shown_payload`, redacted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from service.bus import Bus, DeadLetter
from triage.pii import redact

ALL = 10**9  # "every dead letter" for the backends' limit


def clean(text: str, width: int | None = None) -> str:
    """One terminal-safe line: control characters (a key or reason may hold any) escaped."""
    out = "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                  for c in text)
    return out if width is None or len(out) <= width else out[: width - 1] + "…"


def row(d: DeadLetter, show_payload: bool = False) -> dict[str, Any]:
    """A dead letter's listing fields; ``entry_id`` is the message's id on its own stream, the one the
    worker's log names. The payload (as stored, unredacted) only when asked for."""
    out: dict[str, Any] = {"id": d.id, "entry_id": d.extra.get("entry_id", ""), "topic": d.topic, "key": d.key,
                           "attempts": d.attempts, "reason": d.reason, "failed_at": d.failed_at}
    if "undecodable" in d.extra:
        out["undecodable"] = d.extra["undecodable"]
    if show_payload:
        out["payload"] = d.extra["raw"] if "undecodable" in d.extra else d.payload
    return out


def redacted(value: Any) -> Any:
    """``value`` with the personal data of every string in it (keys included) replaced by ``[type]``."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redacted(k) if isinstance(k, str) else k: redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redacted(v) for v in value]
    return value


def shown_payload(d: DeadLetter) -> Any:
    """What a person may be shown of a payload: redacted (an undecodable entry: its raw fields)."""
    return redacted(row(d, show_payload=True)["payload"])


def per_topic(dead: list[DeadLetter]) -> dict[str, int]:
    """How many dead letters each topic (stage) holds, by topic name."""
    return dict(sorted(Counter(d.topic for d in dead).items()))


@dataclass
class RetryOutcome:
    done: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # no such dead letter (retried or discarded already)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (id, why): an undecodable entry stays


async def targets(bus: Bus, ids: list[str] | tuple[str, ...], topic: str | None = None) -> list[str]:
    """The ids given, once each; without ids, every dead letter (of ``topic``), oldest first."""
    if ids:
        return list(dict.fromkeys(ids))
    return [d.id for d in await bus.dead_letters(topic, ALL)]


async def retry(bus: Bus, ids: list[str]) -> RetryOutcome:
    """Put each dead letter back on its topic with a fresh attempt count, once each."""
    outcome = RetryOutcome()
    for dead_id in dict.fromkeys(ids):
        try:
            (outcome.done if await bus.retry_dead_letter(dead_id) else outcome.missing).append(dead_id)
        except ValueError as exc:  # CodecError: an undecodable entry stays where it is
            outcome.refused.append((dead_id, str(exc)))
    return outcome
