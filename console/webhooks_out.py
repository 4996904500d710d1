"""Outgoing webhooks: ``mention.triaged``, ``mention.routed``, ``case.opened``, ``incident.opened``,
``moderation.notify`` (a rule's alert for a team) and ``sla.breached`` (a case missed a deadline).

Events are found in the database, not in the live fan-out: a scanner walks each source table
past a per-event watermark (kept in ``connector_cursors``), only over rows older than a settle
delay so a transaction committed late with a lower id is not skipped, and writes one delivery
row per subscription. A sender posts due deliveries (:mod:`console.webhooks_delivery`): signed,
each leased by a conditional UPDATE so two web processes never post the same one at once, retried
with exponential back-off; each subscription's in order, the subscriptions independently of one
another, so one slow or unresponsive receiver delays nobody else. Delivery is therefore at least
once; receivers de-duplicate on the event id.

A post deleted on its platform whose terms require its content removed loses its words in the
deliveries of its events too (:mod:`console.webhooks_deleted`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import func, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from console import webhooks_deleted
from console.id_gaps import GAP_TTL
from console.queries import care_team_only, public_text
from console.webhooks_delivery import (
    BACKOFF_BASE_S,
    CONCURRENCY,
    MAX_ATTEMPTS,
    Deliverer,
    backoff,
    deliver_due,
    sign,
    signature_header,
    verify,
)
from models import (
    Case,
    ConnectorCursor,
    Incident,
    Mention,
    ModerationAction,
    RouteDecision,
    SlaBreach,
    TriageResult,
)
from models.base import utcnow
from models.console import WEBHOOK_EVENTS, WebhookDelivery, WebhookSubscription

log = logging.getLogger("socialcare.webhooks")
SETTLE = timedelta(seconds=2)
SCAN_BATCH = 500
MAX_GAPS = 5000
# posting (and its settings: LEASE, TIMEOUT_S, ...) lives in console.webhooks_delivery; these names
# of it stay importable from here
__all__ = ["BACKOFF_BASE_S", "MAX_ATTEMPTS", "SENDER", "SOURCES", "WebhookSender", "backoff", "deliver_due", "install",
           "scan", "sign", "signature_header", "verify"]


# --- event sources --------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    model: Any
    created: Any  # the column that says when the row appeared
    build: Callable[[Any, Any], Any]  # (session, row) -> awaitable payload
    where: Any = None  # only the rows of the table that are this event (e.g. notify actions)


async def _triaged(session: Any, t: TriageResult) -> dict[str, Any]:
    from console.api.mentions import triage_json

    m = await session.get(Mention, t.mention_id)
    decision = await session.scalar(  # routed by now, as a rule: the scan lets rows settle first
        select(RouteDecision).where(RouteDecision.mention_id == t.mention_id))
    # a DM, a takeover or fraud report, a follow-up joining a private case; and, not routed yet (a
    # backlog), one that may still turn out to be such a follow-up: the text stays in the console
    withheld = m is not None and (decision is None or care_team_only(m, t, decision))
    triage = triage_json(t)
    return {"mention_id": t.mention_id, "platform": m.platform if m else None, "url": m.url if m else None,
            "text": public_text(m, t) if m and not withheld else None, "text_withheld": withheld,
            "triage": webhooks_deleted.wordless_triage(triage) if withheld else triage}


async def _routed(session: Any, d: RouteDecision) -> dict[str, Any]:
    return {"mention_id": d.mention_id, "outcome": d.outcome, "reason": d.reason, "confidence": d.confidence}


async def _case(session: Any, c: Case) -> dict[str, Any]:
    return {"case_id": c.id, "category": c.category, "status": c.status, "conversation_id": c.conversation_id,
            "mention_id": c.opened_by_mention_id,
            "first_response_due": c.first_response_due.isoformat() if c.first_response_due else None}


async def _incident(session: Any, i: Incident) -> dict[str, Any]:
    return {"incident_id": i.id, "issue_type": i.issue_type, "channel": i.channel, "title": i.title,
            "status": i.status, "opened_at": i.opened_at.isoformat()}


async def _notify(session: Any, a: ModerationAction) -> dict[str, Any]:
    """Who to alert and why; the post is named by id only (its text and author stay in the console)."""
    m = await session.get(Mention, a.mention_id)
    return {"action_id": a.id, "mention_id": a.mention_id, "notify": (a.details or {}).get("notify"), "rule": a.rule,
            "reason": a.reason, "platform": m.platform if m else None, "channel": m.channel if m else None,
            "conversation_id": m.conversation_id if m else None}


async def _breach(session: Any, b: SlaBreach) -> dict[str, Any]:
    c = await session.get(Case, b.case_id)
    return {"breach_id": b.id, "case_id": b.case_id, "kind": b.kind, "due_at": b.due_at.isoformat(),
            "detected_at": b.detected_at.isoformat(), "category": c.category if c else None,
            "status": c.status if c else None}


SOURCES: dict[str, Source] = {
    "mention.triaged": Source(TriageResult, TriageResult.created_at, _triaged),
    "mention.routed": Source(RouteDecision, RouteDecision.created_at, _routed),
    "case.opened": Source(Case, Case.created_at, _case),
    "incident.opened": Source(Incident, Incident.opened_at, _incident),
    "moderation.notify": Source(ModerationAction, ModerationAction.created_at, _notify,
                                where=ModerationAction.action == "notify"),
    "sla.breached": Source(SlaBreach, SlaBreach.detected_at, _breach),  # one row, so one event, per breach
}
assert set(SOURCES) == set(WEBHOOK_EVENTS)


async def scan(db: Any, now: datetime | None = None, settle: timedelta = SETTLE) -> int:
    """Turn new rows into deliveries for the subscriptions that want them; returns how many."""
    try:
        return await _scan(db, now or utcnow(), settle)
    except IntegrityError:  # another web process scanned the same rows first; it wrote them
        return 0


async def _scan(db: Any, now: datetime, settle: timedelta) -> int:
    created = 0
    written: list[WebhookDelivery] = []
    async with db.session() as session:
        subs = list(await session.scalars(select(WebhookSubscription).where(WebhookSubscription.active.is_(True))))
        first_sub = min((s.created_at for s in subs), default=now)
        for event, src in SOURCES.items():
            cur = await session.get(ConnectorCursor, f"webhooks:{event}")
            if cur is None:  # start after what existed before the first subscription
                only = (src.where,) if src.where is not None else ()
                start = await session.scalar(select(func.max(src.model.id)).where(src.created < first_sub, *only)) or 0
                cur = ConnectorCursor(name=f"webhooks:{event}", cursor=str(start))
                session.add(cur)
            rows, after = await _new_rows(session, src, cur.cursor, now, settle)
            wanting = [s for s in subs if event in (s.events or [])]
            for row in rows if wanting else ():
                data = await src.build(session, row)
                event_id = f"{event}:{row.id}"
                body = {"id": event_id, "type": event, "created_at": getattr(row, src.created.key).isoformat(),
                        "data": data}
                about = data.get("mention_id") if isinstance(data, dict) else None
                for sub in wanting:
                    delivery = WebhookDelivery(subscription_id=sub.id, event_id=event_id, event_type=event,
                                               payload=body, next_attempt_at=now,
                                               mention_id=about if type(about) is int else None)
                    session.add(delivery)
                    written.append(delivery)
                    created += 1
            if after != cur.cursor:  # written last: nothing of the scan is flushed while rows are built
                cur.cursor = after
        await webhooks_deleted.respect_removal(session, written)
        await session.commit()
    return created


async def _new_rows(session: AsyncSession, src: Source, cursor: str | None, now: datetime,
                    settle: timedelta) -> tuple[list[Any], str]:
    """The source's rows to announce, in id order, and the cursor after them. Ids are given out at
    insert, not at commit: on PostgreSQL a row of a transaction still open (an act batch opening a
    case, then working on) can commit after a row with a higher id, and a row may be dated before
    it was written (an incident's ``opened_at`` is its first post's time), so a plain high-water
    mark would pass it for good. The cursor keeps, besides the highest id read, the ids below it
    not announced yet (missing, or not settled) with when they were first missed; they are looked
    for again on every scan, for :data:`GAP_TTL` (a missing id that long was rolled back), at
    most :data:`MAX_GAPS` of them."""
    after, gaps = _read_cursor(cursor)
    event = src.where if src.where is not None else true()
    settled = src.created <= now - settle
    batch = (await session.execute(select(src.model.id, event, settled).where(src.model.id > after)
                                   .order_by(src.model.id).limit(SCAN_BATCH))).all()
    ids = list(gaps)
    found = (await session.execute(select(src.model.id, event, settled).where(src.model.id.in_(ids)))).all() if ids \
        else []
    clock = now.timestamp()
    top = batch[-1][0] if batch else after
    for below, row_id in zip([after, *(r[0] for r in batch)], (r[0] for r in batch)):
        for missing in range(max(below + 1, row_id - MAX_GAPS), row_id):  # a sequence's jump: its top only
            gaps[missing] = clock
    due = []
    for row_id, is_event, is_settled in [*found, *batch]:
        if is_event and not is_settled:
            gaps.setdefault(row_id, clock)  # announced once it settles
            continue
        gaps.pop(row_id, None)
        if is_event:
            due.append(row_id)
    gaps = {i: t for i, t in gaps.items() if clock - t < GAP_TTL.total_seconds()}
    if len(gaps) > MAX_GAPS:
        gaps = dict(sorted(gaps.items())[-MAX_GAPS:])
    rows = list(await session.scalars(select(src.model).where(src.model.id.in_(due)).order_by(src.model.id))) \
        if due else []
    return rows, json.dumps({"after": top, "gaps": gaps}) if gaps else str(top)


def _read_cursor(cursor: str | None) -> tuple[int, dict[int, float]]:
    """(highest id read, {id below it not announced yet: when first missed}); a plain number is a
    cursor written before gaps were kept."""
    value = json.loads(cursor) if cursor else 0
    if isinstance(value, int):
        return value, {}
    return int(value["after"]), {int(k): float(t) for k, t in value.get("gaps", {}).items()}


class WebhookSender:
    """The background loop of a web process: every ``interval_s``, scan, then start posting what is
    due. It does not wait for the posts: a subscription whose posts are still under way (a receiver
    slow to answer, up to the timeout) is left out of the next passes until they end, while the
    other subscriptions' deliveries go out on every pass (:class:`~console.webhooks_delivery.Deliverer`)."""

    def __init__(self, db: Any, *, interval_s: float = 1.0, base_s: float = BACKOFF_BASE_S,
                 settle: timedelta = SETTLE, concurrency: int = CONCURRENCY) -> None:
        self.db, self.interval_s, self.base_s, self.settle = db, interval_s, base_s, settle
        self.concurrency = concurrency
        self.deliverer: Deliverer | None = None
        self.task: asyncio.Task | None = None
        self.stop_event = asyncio.Event()

    async def run_once(self) -> int:
        """One pass: returns for how many subscriptions posting started."""
        assert self.deliverer is not None, "run from the sender's loop"
        await scan(self.db, settle=self.settle)
        return len(await self.deliverer.start())

    async def _loop(self) -> None:
        from service.periodic import every

        async with aiohttp.ClientSession() as http:
            self.deliverer = Deliverer(self.db, http, base_s=self.base_s, concurrency=self.concurrency)
            try:
                await every(self.interval_s, self.run_once, self.stop_event, what="webhook sender pass", logger=log)
            finally:
                await self.deliverer.close()  # the posts under way end (or time out) before the session closes

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop(), name="webhooks-out")

    async def stop(self) -> None:
        self.stop_event.set()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


SENDER = web.AppKey("webhook_sender", WebhookSender)


def install(app: web.Application) -> None:
    from console.keys import RUNTIME

    async def start(app: web.Application) -> None:
        app[SENDER] = WebhookSender(app[RUNTIME].db)
        app[SENDER].start()

    async def stop(app: web.Application) -> None:
        if SENDER in app:
            await app[SENDER].stop()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
