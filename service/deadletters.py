"""Dead letters as an operator sees them, shared by `socialcare deadletter` (Redis bus), the
console's /admin/deadletters page and the bot API's /api/v1/deadletters (either bus, through the web
process's own): one row format and one way of choosing, retrying and discarding them, so the three
cannot drift apart; the page and the API, which people and programs reach with a sign-in or a
token, also redact reasons (:func:`display`) and audit every view and action. The CLI runs with the
servers' own credentials, on a terminal: it shows reasons as they are, and audits its retries and
discards (:func:`audit_action`) and its listings that show payloads (:func:`audit_shown`), with its
``--actor`` (by default ``cli:<OS user>``); a listing without payloads is not audited.

Payloads can hold personal data (whole posts, handles): rows leave them out unless asked, and the
console and the API show them only through :func:`shown_payload`, redacted, after auditing the view.
A secure link a customer quoted (:func:`escalation.links.shown_without_links`) is masked in every
row, the CLI's included: it opens their private channel, and no one reading a dead letter needs it.

A dead letter of a post deleted on its platform whose terms require its content removed holds no
words: the bus rewrote it when the deletion came (:meth:`service.bus.Bus.remove_content`). Its
payload is then the post's deletion and its reason the error's type only; a retry applies the
deletion (a post never stored stays unstored) and brings no words back. A retry or discard by the id
a listing showed before the rewrite acts on the rewritten letter (Redis gave it a new id).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from escalation.links import shown_without_links
from service.audit import record
from service.bus import Bus, BusUnavailable, DeadLetter
from service.privacy import reshaped
from triage.pii import redact

ALL = 10**9  # "every dead letter" for the backends' limit
PAGE, MAX_SHOWN = 100, 10_000  # the rows a listing gives at first, and at most
AT_ONCE = 1000  # dead letters one retry or discard acts on (a confirmed form, an API body)
PAST = {"retry": "retried", "discard": "discarded"}  # the audit actions: deadletter.retried, ...


def clean(text: str, width: int | None = None) -> str:
    """One terminal-safe line: control characters (a key or reason may hold any) escaped."""
    out = "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                  for c in text)
    return out if width is None or len(out) <= width else out[: width - 1] + "…"


def row(d: DeadLetter, show_payload: bool = False) -> dict[str, Any]:
    """A dead letter's listing fields; ``entry_id`` is the message's id on its own stream, the one the
    worker's log names. The payload (personal data as stored) only when asked for. Secure links are
    masked in the reason and the payload, however quoted."""
    out: dict[str, Any] = {"id": d.id, "entry_id": d.extra.get("entry_id", ""), "topic": d.topic, "key": d.key,
                           "attempts": d.attempts, "reason": shown_without_links(d.reason),
                           "failed_at": d.failed_at}
    if "undecodable" in d.extra:
        out["undecodable"] = shown_without_links(d.extra["undecodable"])
    if show_payload:
        stored = d.extra["raw"] if "undecodable" in d.extra else d.payload
        out["payload"] = reshaped(stored, shown_without_links)
    return out


def redacted(value: Any) -> Any:
    """``value`` with the personal data of every string in it (keys included) replaced by ``[type]``,
    and every secure link masked (a customer may quote theirs: it opens their private channel)."""
    return reshaped(value, lambda text: redact(shown_without_links(text)))


def shown_payload(d: DeadLetter) -> Any:
    """What a person may be shown of a payload: redacted (an undecodable entry: its raw fields)."""
    return redacted(row(d, show_payload=True)["payload"])


def display(d: DeadLetter) -> dict[str, Any]:
    """A row for people and bots: :func:`row` with the reason (and why it is undecodable) redacted, as
    an exception message may quote a post."""
    out = row(d)
    out["reason"] = redacted(out["reason"])
    if "undecodable" in out:
        out["undecodable"] = redacted(out["undecodable"])
    return out


async def listed(bus: Bus) -> list[DeadLetter]:
    """Every dead letter, oldest first; BusUnavailable at once when the bus does not answer (a Redis
    call would otherwise retry for half a minute before giving up)."""
    await available(bus)
    return await bus.dead_letters(None, ALL)


async def available(bus: Bus) -> None:
    if not await bus.ping():
        raise BusUnavailable("the message bus does not answer")


def per_topic(dead: list[DeadLetter]) -> dict[str, int]:
    """How many dead letters each topic (stage) holds, by topic name."""
    return dict(sorted(Counter(d.topic for d in dead).items()))


@dataclass
class Outcome:
    """What a retry or discard did, id by id."""

    done: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # no such dead letter (retried or discarded already)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (id, why): an undecodable entry stays

    def untried(self, ids: list[str]) -> list[str]:
        """Those of ``ids`` the bus was not asked about (it went away first: :class:`Interrupted`)."""
        tried = {*self.done, *self.missing, *(i for i, _ in self.refused)}
        return [i for i in ids if i not in tried]



class Interrupted(BusUnavailable):
    """The bus stopped answering part-way: ``outcome`` holds what was done before, so that it is
    still audited (a BusUnavailable, so callers that only report the failure need not know)."""

    def __init__(self, message: str, outcome: Outcome) -> None:
        super().__init__(message)
        self.outcome = outcome


async def targets(bus: Bus, ids: list[str] | tuple[str, ...], topic: str | None = None) -> list[str]:
    """The ids given, once each; without ids, every dead letter (of ``topic``), oldest first."""
    if ids:
        return list(dict.fromkeys(ids))
    return [d.id for d in await bus.dead_letters(topic, ALL)]


async def retry(bus: Bus, ids: list[str]) -> Outcome:
    """Put each dead letter back on its topic with a fresh attempt count, once each."""
    outcome = Outcome()
    for dead_id in dict.fromkeys(ids):
        try:
            (outcome.done if await bus.retry_dead_letter(dead_id) else outcome.missing).append(dead_id)
        except ValueError as exc:  # CodecError: an undecodable entry stays where it is
            outcome.refused.append((dead_id, str(exc)))
        except BusUnavailable as exc:
            raise Interrupted(str(exc), outcome) from exc
    return outcome


async def discard(bus: Bus, ids: list[str]) -> Outcome:
    """Remove each dead letter for good, once each. One call per id: a batch only says how many
    went, and a caller is owed which (one retried or discarded meanwhile by another admin is missing)."""
    outcome = Outcome()
    for dead_id in dict.fromkeys(ids):
        try:
            (outcome.done if await bus.delete_dead_letters([dead_id]) else outcome.missing).append(dead_id)
        except BusUnavailable as exc:
            raise Interrupted(str(exc), outcome) from exc
    return outcome


async def act(bus: Bus, verb: str, ids: list[str]) -> Outcome:
    """:func:`retry` or :func:`discard` (``verb``), as the page and the API offer them."""
    return await (retry if verb == "retry" else discard)(bus, ids)


async def audit_view(db: Any, actor: str, d: DeadLetter) -> None:
    """Audit (committed) that ``actor`` is about to be shown ``d``'s payload."""
    async with db.session() as session:
        record(session, actor, "deadletter.payload_viewed", "deadletter", d.id, topic=d.topic)
        await session.commit()


async def audit_shown(db: Any, actor: str, shown: list[DeadLetter], topic: str | None = None) -> None:
    """Audit (committed) that ``actor`` is about to be shown the payloads of ``shown``, as a listing
    shows them: the topic asked for, the count (also per topic) and the ids, :data:`AT_ONCE` ids an
    entry (no entry grows without bound), never a payload."""
    async with db.session() as session:
        for start in range(0, len(shown), AT_ONCE):
            part = shown[start:start + AT_ONCE]
            record(session, actor, "deadletter.payload_viewed", "deadletter",
                   part[0].id if len(part) == 1 else None,
                   topic=topic, topics=per_topic(part), count=len(part), ids=[d.id for d in part])
        await session.commit()


async def audit_action(db: Any, actor: str, verb: str, ids: list[str], outcome: Outcome, *,
                       topic: str | None = None, gone: list[str] | tuple[str, ...] = ()) -> None:
    """Audit a retry or discard with ids only (never a payload): those done, missing (``gone``: known
    missing before asking the bus), refused, and, after an :class:`Interrupted`, those not tried."""
    untried = outcome.untried(ids)
    extra = {"untried": untried} if untried else {}
    async with db.session() as session:
        record(session, actor, f"deadletter.{PAST[verb]}", "deadletter", ids[0] if len(ids) == 1 else None,
               topic=topic, count=len(outcome.done), ids=outcome.done, missing=[*outcome.missing, *gone],
               refused=[i for i, _ in outcome.refused], **extra)
        await session.commit()
