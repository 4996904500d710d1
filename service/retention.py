"""The retention purge (``retention_days``): content older than the cutoff is erased the way
:mod:`service.erasure` erases one person's (with :mod:`service.privacy`), in batches, once a day in
the web process.

Posts created before the cutoff lose their content (labels kept for the digests); so do, whatever
their age, tweets deleted on X whose content is still here (deleted under an older release, or by a
deletion published before it: :data:`listener.deletions.BACKLOG`), as X's terms ask; messages of cases
resolved before it are erased; delivered or failed webhook deliveries older than it are deleted;
authors with no newer post and no open case are anonymised (also those first seen after the cutoff
through older posts: a backfill); sign-in and sign-out audit entries written before they stopped
recording the client's address lose it, whatever their age (an IP address is personal data, and
the audit log is not purged by age: :mod:`console.login`); given the bus, dead letters that failed
before it are removed (:mod:`service.privacy_bus`; a bus that does not answer is logged and left
for the next run); erasure tombstones older than both the cutoff and their lifetime
(:func:`service.tombstones.lifetime`: 30 days, or the longest re-check window if longer) are deleted.
Open cases, the posts they hold and anything newer are never touched. Social identities and
customer records are the brand's CRM data and the audit log is its own record: neither is purged
by age.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from listener import deletions
from models import AuditEvent, Author, Case, CaseMessage, Mention
from models.base import utcnow
from models.console import WebhookDelivery
from models.mentions import ERASED_TEXT
from service import privacy_bus, tombstones
from service.audit import record
from service.bus import BusUnavailable
from service.privacy import (
    CHUNK,
    ERASED_KEY,
    anonymise_authors,
    delivered,
    erase_posts,
    not_erased,
    rewrite,
    stub_deliveries,
)

log = logging.getLogger("socialcare.retention")
SIGN_INS = ("login.success", "login.failure", "login.throttled", "logout")  # audited with the client's IP before
PURGE_INTERVAL_S = 24 * 3600.0  # the web process's purge (shortened in tests)


def cutoff_for(days: int, now: datetime | None = None) -> datetime:
    return (now or utcnow()) - timedelta(days=days)


def _open_case_post() -> Any:
    """SQL: the post opened, or was copied into, a case that is not resolved."""
    return or_(exists().where(Case.opened_by_mention_id == Mention.id, Case.status != "resolved"),
               exists().where(CaseMessage.mention_id == Mention.id, CaseMessage.case_id == Case.id,
                              Case.status != "resolved"))


def _post_due(cutoff: datetime) -> Any:
    """SQL: a post whose content the purge erases (or has erased)."""
    return and_(Mention.created_at < cutoff, not_(_open_case_post()))


def _message_due(cutoff: datetime) -> Any:
    """SQL: a case message still to erase that is not the copy of a post the purge erases anyway
    (counted once, in a dry run too)."""
    return and_(CaseMessage.body != ERASED_TEXT, or_(CaseMessage.mention_id.is_(None), not_(exists().where(
        Mention.id == CaseMessage.mention_id, _post_due(cutoff)))))


def _purge_queries(cutoff: datetime) -> dict[str, tuple[Any, Any]]:
    """Per kind of row the purge handles: (its id column, what makes a row due)."""
    return {
        "posts": (Mention.id, and_(_post_due(cutoff), not_erased())),
        "deleted_on_x": (Mention.id, deletions.BACKLOG),  # the platform's terms: removed within a day
        "resolved_cases": (Case.id, and_(Case.status == "resolved", Case.resolved_at < cutoff, exists().where(
            CaseMessage.case_id == Case.id, _message_due(cutoff)))),
        "old_deliveries": (WebhookDelivery.id, and_(WebhookDelivery.created_at < cutoff,
                                                    WebhookDelivery.status != "pending")),
        "sign_in_addresses": (AuditEvent.id, and_(AuditEvent.action.in_(SIGN_INS),  # whatever their age
                                                  AuditEvent.details["ip"].as_string().is_not(None))),
        "inactive_authors": (Author.id, and_(
            # seen before the cutoff, or only through older posts (a backfill or replay of old traffic)
            or_(Author.created_at < cutoff, exists().where(Mention.author_id == Author.id)),
            not_(Author.author_key.startswith(ERASED_KEY)),
            not_(exists().where(Mention.author_id == Author.id, Mention.created_at >= cutoff)),
            not_(exists().where(Case.author_id == Author.id, Case.status != "resolved")))),
    }


async def purge_plan(db: Any, cutoff: datetime, tombstone_lifetime: timedelta | None = None) -> dict[str, int]:
    """How many rows of each kind the purge would handle now (for a progress bar)."""
    async with db.session() as session:
        plan = {kind: await session.scalar(select(func.count()).select_from(col.table).where(due))
                for kind, (col, due) in _purge_queries(cutoff).items()}
        plan["tombstones"] = await tombstones.expired(session, _tombstones_before(cutoff, tombstone_lifetime))
        return plan


def _tombstones_before(cutoff: datetime, lifetime: timedelta | None) -> datetime:
    return tombstones.purge_before(cutoff, lifetime if lifetime is not None else tombstones.lifetime())


async def purge(db: Any, cutoff: datetime, *, actor: str = "system", dry_run: bool = False,
                batch_size: int = CHUNK, progress: Callable[[int], object] | None = None, bus: Any = None,
                tombstone_lifetime: timedelta | None = None) -> Counter:
    """Erase what is older than ``cutoff`` (see the module docstring), ``batch_size``
    rows per transaction (rolled back with ``dry_run``), and with ``bus`` (a started
    :class:`service.bus.Bus`) the dead letters that failed before it; the erasure tombstones older
    than the cutoff and than ``tombstone_lifetime`` (default :func:`service.tombstones.lifetime`
    without settings; callers pass it with theirs); one audit event per run. Open cases, the posts
    they hold and anything newer than the cutoff are never touched."""
    counts: Counter = Counter()
    work = {"posts": lambda s, ids: _erase_posts(s, ids, counts),
            "deleted_on_x": lambda s, ids: _remove_deleted(s, ids, counts),
            "resolved_cases": lambda s, ids: _erase_case_messages(s, ids, cutoff, counts),
            "old_deliveries": lambda s, ids: _delete_deliveries(s, ids, counts),
            "sign_in_addresses": lambda s, ids: _drop_addresses(s, ids, counts),
            "inactive_authors": lambda s, ids: anonymise_authors(s, ids, counts)}
    for kind, (col, due) in _purge_queries(cutoff).items():
        last = 0
        while True:
            async with db.session() as session:
                ids = list(await session.scalars(select(col).where(due, col > last).order_by(col).limit(batch_size)))
                if not ids:
                    break
                await work[kind](session, ids)
                await (session.rollback() if dry_run else session.commit())
            last = ids[-1]
            if progress is not None:
                progress(len(ids))
            await asyncio.sleep(0)  # the stages sharing this loop get their turn between batches
    async with db.session() as session:  # its own short transaction: it holds the gate ingest reads
        before = _tombstones_before(cutoff, tombstone_lifetime)
        if dry_run:
            counts["tombstones"] += await tombstones.expired(session, before)
        else:
            counts["tombstones"] += await tombstones.purge(session, before)
            await session.commit()
    if progress is not None and counts["tombstones"]:
        progress(counts["tombstones"])
    async with db.session() as session:
        # the events still kept about a post erased now or before (a dry run counts those it would erase)
        await stub_deliveries(session, exists().where(Mention.id == delivered("mention_id"), or_(
            and_(Mention.deleted.is_(True), Mention.text == ERASED_TEXT), _post_due(cutoff))), counts)
        if bus is not None:
            try:
                counts["dead_letters"] += await privacy_bus.remove(
                    bus, await privacy_bus.failed_before(bus, cutoff), dry_run=dry_run)
            except BusUnavailable as exc:
                log.warning("retention purge: dead letters left for the next run (%s)", exc)
        counts = Counter({k: v for k, v in counts.items() if v})
        if dry_run:
            await session.rollback()
            return counts
        record(session, actor, "privacy.purged", "retention", None, cutoff=cutoff.isoformat(), counts=dict(counts))
        await session.commit()
    return counts


async def _erase_posts(session: AsyncSession, ids: list[int], counts: Counter) -> None:
    """Locked first (PostgreSQL), as a deletion's removal is: a stage writing about one of these posts
    then commits before the purge reads what quotes them, or after it, and finds it erased."""
    await deletions.lock_rows(session, ids)
    await erase_posts(session, ids, counts, audit=False)


async def _remove_deleted(session: AsyncSession, ids: list[int], counts: Counter) -> None:
    counts["deleted_posts_content_removed"] += await deletions.remove_stored(session, ids)


async def _erase_case_messages(session: AsyncSession, case_ids: list[int], cutoff: datetime, counts: Counter) -> None:
    counts["case_messages"] += await rewrite(session, CaseMessage, and_(
        CaseMessage.case_id.in_(case_ids), _message_due(cutoff)), [CaseMessage.body], lambda m: {"body": ERASED_TEXT})


async def _delete_deliveries(session: AsyncSession, ids: list[int], counts: Counter) -> None:
    counts["webhook_deliveries_deleted"] += (await session.execute(
        delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))).rowcount


async def _drop_addresses(session: AsyncSession, ids: list[int], counts: Counter) -> None:
    counts["sign_in_addresses"] += await rewrite(session, AuditEvent, AuditEvent.id.in_(ids), [AuditEvent.details],
                                                 lambda e: {"details": {k: v for k, v in e.details.items() if k != "ip"}})


def install(app: Any, interval_s: float | None = None) -> None:
    """In a web process (``run``, ``web``) with ``retention_days`` set: the purge now and then once
    every ``interval_s`` (default :data:`PURGE_INTERVAL_S`, a day) until shutdown."""
    from console.keys import RUNTIME
    from service.periodic import every

    state: dict[str, Any] = {}

    async def start(app: Any) -> None:
        rt = app[RUNTIME]
        days = getattr(rt.settings, "retention_days", None)
        if days is None:
            return

        async def once() -> None:
            counts = await purge(rt.db, cutoff_for(days), bus=rt.bus,
                                 tombstone_lifetime=tombstones.lifetime(rt.settings))
            log.info("retention purge (%d days): %s", days, dict(counts) or "nothing to do")

        state["stop"] = stop = asyncio.Event()
        state["task"] = asyncio.get_running_loop().create_task(
            every(interval_s or PURGE_INTERVAL_S, once, stop, what="the retention purge", logger=log),
            name="retention-purge")

    async def stop(app: Any) -> None:
        if "task" in state:
            state["stop"].set()
            await asyncio.gather(state.pop("task"), return_exceptions=True)

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
