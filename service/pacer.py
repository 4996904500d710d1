"""The pacer: incident replies leave their channel's queue at a set pace, and the web process's pass
takes up what dead processes left behind (mixed into :class:`service.dispatch.Dispatcher`; the loop
is :func:`run_pacer`).

An incident's status replies go to everyone affected at once, and a platform takes a burst of
identical replies for spam: they wait as ``queued`` and leave at most ``paced_per_minute`` per
channel and minute, oldest first, each once (:meth:`PacerPass.release_queued`: each is claimed
before sending, so several processes may release at once). A claim counts against its channel's
pace for a minute only (a dead one holds nothing back), and a reply held back for its post's hide
takes no slot. Queued status replies of an incident fixed since are superseded first: the fix says more.
A bot's replies through the API (``bot_api``) take slots of the same pace (:data:`PACE_COUNTED`, from
the moment they are written): the platform sees one account. They never wait in the queue; the API
refuses one the pace has no slot for (429, :func:`pace_used` says when one frees).

The same pass sweeps sends stranded in ``sending``, and sends, performs or queues what a process
that died before any claim left, older than the stranded bound (:mod:`service.stranded` says which
rows and why). Each step runs whatever the one before did.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, or_, select, update

from models import Reply
from models.bulk import IDS
from service.outages import log_failure
from service.reply_delivery import SUPERSEDE_FIXED
from service.stranded import (
    GONE_QUEUED,
    HELD,
    HELD_READY,
    NOT_HELD,
    ORPHANED_REPLIES,
    PACED_KINDS,
    TO_PERFORM,
    queue_orphans,
    sweep_stranded,
)

if TYPE_CHECKING:
    from service.dispatch import Dispatcher

log = logging.getLogger("socialcare.dispatch")
DEFAULT_PACED_PER_MINUTE = 60  # Settings.incident_broadcast_per_minute
PACE_WINDOW = timedelta(minutes=1)
_R = Reply.__table__.c
API_PACED = ("bot_api",)  # a bot's API replies: not queued, but they take their channel's slots
PACE_COUNTED = (*PACED_KINDS, *API_PACED)
# a delivery's incident replies join their channel's queue (built once: models.bulk)
PACE = (update(Reply.__table__).where(_R.id.in_(IDS), _R.status == "pending", _R.kind.in_(PACED_KINDS))
        .values(status="queued"))


class PacerPass:
    """The queue's release and the pacer pass's steps, for the :class:`~service.dispatch.Dispatcher`
    (whose :meth:`deliver`, :meth:`perform`, :meth:`_send`, :meth:`_hide_first` and
    :meth:`_deliver_one` they use)."""

    db: Any
    paced_per_minute: int
    stranded_after: timedelta
    clock: Callable[[], datetime]

    async def sweep_stranded(self) -> dict[str, list[int]]:
        """:func:`service.stranded.sweep_stranded` with this dispatcher's clock and bound."""
        return await sweep_stranded(self.db, self.clock(), self.stranded_after)

    async def perform_stranded(self) -> int:
        """Perform the moderation actions the sweep put back to ``queued``, and those left ``queued``
        unclaimed longer than the bound (their performer died first): oldest first, each once."""
        async with self.db.session() as session:
            ids = list(await session.scalars(TO_PERFORM, {"cutoff": self.clock() - self.stranded_after}))
        await self.perform(ids)
        return len(ids)

    async def release_held(self) -> int:
        """Deliver the public replies held back for their post's hide, now that it is settled; those
        whose post is deleted on its platform or erased meanwhile are cancelled as they are taken up
        (and so are the queued public replies to such a post, held or not)."""
        async with self.db.session() as session:
            ready = list(await session.scalars(HELD_READY))
            gone = list(await session.scalars(GONE_QUEUED))
        await self.deliver(ready)
        for reply_id in gone:  # queued ones: cancelled by _deliver_one, taking no slot of the pace
            await self._send(self._deliver_one, reply_id, expect="queued")
        return len(ready) + len(gone)

    async def release_orphans(self) -> int:
        """Deliver the replies left ``pending`` unclaimed longer than the bound (their deliverer died
        before claiming them: an in-process bus's batch lost, a message dead-lettered), oldest first."""
        async with self.db.session() as session:
            ids = list(await session.scalars(ORPHANED_REPLIES, {"cutoff": self.clock() - self.stranded_after}))
        if ids:
            log.warning("replies %s pending unclaimed for longer than %s: delivered now", ids, self.stranded_after)
        await self.deliver(ids)
        return len(ids)

    async def queue_orphans(self) -> list[int]:
        """:func:`service.stranded.queue_orphans` past this dispatcher's bound: an incident's replies a
        dead deliverer left ``pending`` join their channel's queue (:meth:`release_queued` sends them)."""
        return await queue_orphans(self.db, self.clock() - self.stranded_after)

    async def release_queued(self, now: datetime | None = None) -> int:
        """Send the queued incident replies each channel's budget allows now, oldest first; returns
        how many were sent. Safe to run in several processes: each reply is claimed before sending.
        First the queued status replies of an incident fixed since are superseded (module doc)."""
        now = now or self.clock()
        async with self.db.session() as session:
            superseded = (await session.execute(SUPERSEDE_FIXED.where(_R.status == "queued"))).rowcount
            await session.commit()  # not held while the queue is read (SQLite: one writer)
            if superseded:
                log.info("%d queued status replies of incidents fixed since: superseded", superseded)
            platforms = list(await session.scalars(select(Reply.platform).where(
                Reply.status == "queued", NOT_HELD).distinct()))
            todo: list[int] = []
            for platform in platforms:
                budget = self.paced_per_minute - await self._paced_recently(session, platform, now)
                if budget > 0:  # a reply held back for its post's hide takes no slot
                    todo += list(await session.scalars(select(Reply.id).where(
                        Reply.status == "queued", Reply.platform == platform, NOT_HELD)
                        .order_by(Reply.id).limit(budget)))
        if todo:  # a hide of their post queued (put back by the sweep, say) goes first
            await self._hide_first(todo)
        sent = 0
        for reply_id in todo:
            sent += await self._send(self._deliver_one, reply_id, expect="queued")
        return sent

    @staticmethod
    async def _paced_recently(session, platform: str, now: datetime) -> int:
        """The slots of the channel's pace taken in the last minute (:func:`paced_slots`)."""
        return len(await paced_slots(session, platform, now))


def _slot_time() -> Any:
    """When a reply took its slot: sent, claimed (still under way), or written (an API reply not
    claimed yet: the request that wrote it is delivering it)."""
    return case((Reply.status == "sending", Reply.claimed_at), (Reply.sent_at.is_not(None), Reply.sent_at),
                else_=Reply.created_at)


async def paced_slots(session, platform: str, now: datetime) -> list[datetime]:  # noqa: ANN001
    """The times the slots of the channel's pace taken in the last minute were taken, oldest first:
    sent in it, or claimed in it and still under way (an older claim whose sender died takes no slot:
    :func:`sweep_stranded` marks it ``unknown``), and a bot's API reply written in it and not sent yet
    (unless held back for its post's hide)."""
    since = now - PACE_WINDOW
    taken = or_(Reply.sent_at > since,
                and_(Reply.status == "sending", Reply.claimed_at > since),
                and_(Reply.kind.in_(API_PACED), Reply.status == "pending", Reply.created_at > since,
                     or_(Reply.error.is_(None), ~Reply.error.startswith(HELD, autoescape=True))))
    return list(await session.scalars(select(_slot_time()).where(
        Reply.platform == platform, Reply.kind.in_(PACE_COUNTED), taken).order_by(_slot_time())))


async def pace_used(session, platform: str, per_minute: int, now: datetime,  # noqa: ANN001
                    ) -> tuple[int, datetime | None]:
    """The slots of the channel's pace taken in the last minute, and, when they reach ``per_minute``,
    when the next one frees."""
    slots = await paced_slots(session, platform, now)
    if len(slots) < per_minute:
        return len(slots), None
    return len(slots), slots[len(slots) - per_minute] + PACE_WINDOW


async def run_pacer(dispatcher: Dispatcher, interval_s: float, stop: asyncio.Event) -> None:
    """The web process's loop, every ``interval_s`` until ``stop``: sends stranded in ``sending`` are
    swept (:func:`service.stranded.sweep_stranded`), the moderation actions put back or left unclaimed
    are performed, public replies held back for their post's hide go once it is settled, replies left
    ``pending`` unclaimed go (an incident's join its channel's queue), and queued incident replies
    leave as the channels' budgets allow. Each
    step runs whatever the one before did: a failure is logged (its type, never its words) and the
    next step goes on."""
    from service.periodic import every

    steps = (("sweeping stranded sends", dispatcher.sweep_stranded),
             ("performing the moderation actions put back", dispatcher.perform_stranded),
             ("releasing held replies", dispatcher.release_held),
             ("delivering unclaimed replies", dispatcher.release_orphans),
             ("queueing unclaimed incident replies", dispatcher.queue_orphans),
             ("releasing queued replies", dispatcher.release_queued))

    async def one_pass() -> None:
        for what, step in steps:
            try:
                await step()
            except Exception as exc:  # noqa: BLE001 - the other steps still run; the next pass tries again
                log_failure(log, exc, "the pacer's pass: %s failed (%s)", what, type(exc).__name__, traceback=False)

    await every(interval_s, one_pass, stop, what="the pacer's pass", logger=log)
