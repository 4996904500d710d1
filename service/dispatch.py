"""Delivery of outbound replies and actions through the connectors, at most once.

A reply is committed as ``pending`` before anything is sent, claimed as ``sending`` (a conditional
update, committed) just before the platform call, then ``sent``/``failed``. A reply left ``sending``
by a crash (its claim older than the stranded bound), or whose platform call went out and got no
answer in time (the connector says ``uncertain``), is marked ``unknown`` for an agent to check,
never sent twice. In dry-run
mode, or when no connector serves the platform, the reply is recorded as ``dry_run`` (what would
have been sent).

Order guarantees, whoever calls :meth:`Dispatcher.deliver`:

* a queued hide or removal of the post a public reply answers is performed first, so a post that
  exposed personal data is gone before anything is said beside it;
* the secure-link DM of a case goes before its public notice, and a notice that says "we've sent
  you a link by DM" is reworded into a request for a DM when no DM went out;
* incident status replies (one-to-many) are paced: at most ``paced_per_minute`` per channel per
  minute. The rest wait as ``queued`` — never dropped, each sent once — and leave the queue oldest
  first through :meth:`Dispatcher.release_queued` (every delivery, and the web process's pacer loop);
  a status reply of an incident fixed since (committed after the fix, by an act stage that read the
  incident open) is ``superseded`` there and as its send is claimed, never sent after the fix;
* a reply or a platform action about a post erased before it was claimed is ``cancelled``, never
  sent (:mod:`service.privacy_actions`); the text sent is the one read as the reply was claimed;
* a public reply to a post deleted on its platform after the reply was queued is ``cancelled`` with
  the reason as its ``error`` (the platform would refuse it; the post is checked as the reply is
  claimed, in dry-run too): a private message to its author still goes;
* a public reply waits while a hide or removal of its post is ``sending`` or ``unknown`` and no later
  hide, removal or filter of it settled it: it stays ``pending``/``queued`` with an ``error`` saying
  so ("held back: ..."), and goes with the pacer's next pass once settled (cancelled if the post is
  deleted or erased meanwhile): :mod:`service.stranded`.

Nothing stays ``sending`` for ever. Each claim is timed (``claimed_at``): a claim older than
``stranded_send_minutes`` whose sender never recorded the outcome (its process killed mid-call) is
swept by the pacer's pass (:func:`service.stranded.sweep_stranded`: a reply becomes ``unknown`` for a
person to check, a moderation action is performed again), and a claim counts against its channel's
pace only for a minute. The pacer's pass also sends what a dead process left ``pending`` or
``queued`` unclaimed. A graceful stop with Redis Streams (:meth:`Dispatcher.halt`) starts no new
send, and a cancel waits for the platform call under way and the commit of its outcome
(:func:`finish_despite_cancel`): the act stage's message is then left for redelivery (:class:`SendsStopped`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from community import moderation
from community.broadcast import FIXED_FIRST, FIXED_SINCE
from escalation.public_guard import gone_refusal
from listener.protocol import Action
from models import Author, Mention, ModerationAction, Reply
from models.base import utcnow
from models.bulk import IDS
from service.privacy import CANCELLED, erased
from service.privacy_actions import cancel_replies, cancel_where, perform_actions
from service.stranded import (
    DEFAULT_STRANDED_AFTER,
    GONE_QUEUED,
    HELD,
    HELD_READY,
    INTERRUPTED,
    NOT_HELD,
    ORPHANED_REPLIES,
    PACED_KINDS,
    TO_PERFORM,
    hold_back,
    interrupt_replies,
    queue_orphans,
    record_reply_outcome,
    sweep_stranded,
)

__all__ = ["HELD", "INTERRUPTED", "PACED_KINDS", "Dispatcher", "SendsStopped", "finish_despite_cancel", "run_pacer",
           "sweep_stranded"]  # the stranded sends' names, as before they had a module of their own
log = logging.getLogger("socialcare.dispatch")
DEFAULT_PACED_PER_MINUTE = 60  # Settings.incident_broadcast_per_minute
PACE_WINDOW = timedelta(minutes=1)
DM_WENT_OUT = ("pending", "sending", "sent", "dry_run", "unknown")
_R, _A = Reply.__table__.c, ModerationAction.__table__.c
# what every delivery asks and does, built once (models.bulk)
PENDING = select(_R.id).where(_R.mention_id.in_(IDS), _R.status.in_(("pending", "sending")))
HIDE_FIRST = (select(_A.id).where(_A.mention_id.in_(select(_R.mention_id).where(_R.id.in_(IDS), _R.visibility == "public")),
                                  _A.status == "queued", _A.action.in_(moderation.REMOVAL_ACTIONS))
              .order_by(_A.id))  # queued hides and removals of the posts the replies answer
RECORD_ONLY = update(Reply.__table__).where(_R.id.in_(IDS), _R.status == "pending").values(status="dry_run")
PACE = (update(Reply.__table__).where(_R.id.in_(IDS), _R.status == "pending", _R.kind.in_(PACED_KINDS))
        .values(status="queued"))
# status replies whose incident was fixed since: the fix says more (as closing it does to those waiting)
SUPERSEDE_FIXED = update(Reply.__table__).where(FIXED_SINCE).values(status="superseded", error=FIXED_FIRST)
T = TypeVar("T")


class SendsStopped(asyncio.CancelledError):
    """The process is stopping (:meth:`Dispatcher.halt`, with Redis Streams only), so no new send was
    started: the replies and actions not sent yet stay ``pending``/``queued``. A cancellation, not an
    error: the act stage's worker leaves the message unacknowledged, and its redelivery (to another
    worker once the claim-idle time is past, or after the restart) sends the rest. That redelivery
    counts one attempt of the message, as any does (neither bus can give a delivery back without
    one yet): a message stopped ``max_deliveries`` times is dead-lettered, and the pacer's pass then
    sends what it left, once older than the stranded bound (:data:`service.stranded.ORPHANED_REPLIES`)."""


async def finish_despite_cancel(aw: Awaitable[T]) -> T:
    """Await ``aw`` (one platform call and the commit of its outcome) to its end even when the caller
    is cancelled meanwhile, then pass the cancellation on: a cancel never leaves a row ``sending``
    with the call made or not. A call that was itself cancelled raises as it did."""
    task = asyncio.ensure_future(aw)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait([task])  # a cancel ends this wait, not the call
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled() and task.exception() is not None:
            log.error("a send finished after a cancel failed: %s", type(task.exception()).__name__)
        raise asyncio.CancelledError
    return task.result()


class Dispatcher:
    def __init__(self, db, connectors: dict, dry_run: bool, *,
                 paced_per_minute: int = DEFAULT_PACED_PER_MINUTE,
                 dry_run_channels: frozenset[str] | set[str] = frozenset(),
                 stranded_after: timedelta = DEFAULT_STRANDED_AFTER,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock
        self.connectors = connectors
        self.dry_run = dry_run
        self.paced_per_minute = paced_per_minute
        self.dry_run_channels = dry_run_channels
        self.stranded_after = stranded_after
        self.halted = False

    @classmethod
    def for_settings(cls, db, connectors, settings) -> Dispatcher:  # noqa: ANN001
        """The dispatcher every caller uses (stages, console, CLI): global dry run, the channels whose
        bot policy is dry-run (``bot_dry_run_channels`` or a ``bot_channels`` override) and the
        incident pacing all come from one place."""
        from community.replybot import ChannelPolicy

        if not isinstance(connectors, dict):
            connectors = {c.platform: c for c in connectors}
        platforms = set(connectors) | set(settings.bot_dry_run_channels) | set(settings.bot_channels)
        return cls(db, connectors, settings.dry_run, paced_per_minute=settings.incident_broadcast_per_minute,
                   dry_run_channels={p for p in platforms if ChannelPolicy.for_channel(settings, p).dry_run},
                   stranded_after=timedelta(minutes=settings.stranded_send_minutes))

    def halt(self) -> None:
        """A graceful stop: no send starts from now on (:class:`SendsStopped`); the one under way ends.
        Only where the message is redelivered after the restart (Redis Streams): see
        :meth:`service.pipeline.Pipeline.stop`."""
        self.halted = True

    async def _send(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """One send (a reply, a platform action): none once halted, and finished even if cancelled."""
        if self.halted:
            raise SendsStopped("stopping: what is not sent yet is left for redelivery")
        return await finish_despite_cancel(fn(*args, **kwargs))

    async def perform(self, action_ids: list[int], *, dry_run: bool | None = None,
                      dry_run_channels: frozenset[str] | set[str] | None = None) -> None:
        """Carry out queued moderation actions (:func:`service.privacy_actions.perform_actions`) one at
        a time, as replies are sent; recorded in one pass when nothing goes to a platform (dry run)."""
        dry_run = self.dry_run if dry_run is None else dry_run
        channels = self.dry_run_channels if dry_run_channels is None else dry_run_channels
        if dry_run and action_ids:
            await finish_despite_cancel(perform_actions(self.db, self.connectors, list(action_ids), dry_run=True,
                                                        dry_run_channels=channels))
            return
        for action_id in action_ids:
            await self._send(perform_actions, self.db, self.connectors, [action_id], dry_run=False,
                             dry_run_channels=channels)

    async def deliver(self, reply_ids: list[int]) -> None:
        if not reply_ids:
            return
        await self._hide_first(reply_ids)
        if self.dry_run:  # what would have been sent is recorded in one statement
            async with self.db.session() as session:
                await cancel_replies(session, reply_ids)
                await cancel_public_to_deleted(session, reply_ids)
                await session.execute(RECORD_ONLY, {"ids": list(reply_ids)})
                await session.commit()
            return
        async with self.db.session() as session:  # incident replies join their channel's queue
            await cancel_replies(session, reply_ids)
            await session.execute(PACE, {"ids": list(reply_ids)})
            await session.commit()
        for reply_id in reply_ids:
            await self._send(self._deliver_one, reply_id)
        await self.release_queued()

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
        """Sent in the last minute, or claimed in it and still under way (an older claim whose
        sender died takes no slot: :func:`sweep_stranded` marks it ``unknown``)."""
        since = now - PACE_WINDOW
        return int(await session.scalar(select(func.count()).select_from(Reply).where(
            Reply.platform == platform, Reply.kind.in_(PACED_KINDS),
            or_(and_(Reply.status == "sending", Reply.claimed_at > since), Reply.sent_at > since))) or 0)

    async def _hide_first(self, reply_ids: list[int]) -> None:
        async with self.db.session() as session:
            action_ids = list(await session.scalars(HIDE_FIRST, {"ids": list(reply_ids)}))
        await self.perform(action_ids)

    async def _dm_before_notice(self, reply: Reply) -> None:
        """The case's secure-link DM first; without one that went out, the notice asks for a DM."""
        from escalation.handoff import DM_REQUEST_TEMPLATE, public_notice_text

        async with self.db.session() as session:
            dms = list(await session.scalars(select(Reply.id).where(
                Reply.case_id == reply.case_id, Reply.kind == "secure_link_dm", Reply.status == "pending")))
        for dm_id in dms:
            await self._deliver_one(dm_id)
        async with self.db.session() as session:
            went_out = await session.scalar(select(Reply.id).where(
                Reply.case_id == reply.case_id, Reply.kind == "secure_link_dm", Reply.status.in_(DM_WENT_OUT)))
            notice = await session.get(Reply, reply.id)
            mention = await session.get(Mention, notice.mention_id) if notice.mention_id else None
            if went_out is None and notice.status == "pending" and notice.template != DM_REQUEST_TEMPLATE \
                    and mention is not None:
                notice.text, notice.template = await public_notice_text(session, mention, dm_possible=False)
                log.info("reply %s: no secure-link DM went out; the public notice asks for a DM", notice.id)
                await session.commit()

    async def _deliver_one(self, reply_id: int, expect: str = "pending") -> int:
        async with self.db.session() as session:
            reply = await session.get(Reply, reply_id)
        if reply is not None and reply.status == expect and reply.kind == "secure_link" and reply.case_id \
                and reply.visibility == "public":
            await self._dm_before_notice(reply)
        async with self.db.session() as session:
            reply = await session.get(Reply, reply_id)
            if reply is None or reply.status not in (expect, "sending"):
                return 0
            if reply.status == "sending":  # another process is sending it, or died doing so
                cutoff = self.clock() - self.stranded_after
                if expect == "pending" and reply.claimed_at is not None and reply.claimed_at < cutoff:
                    await interrupt_replies(session, [reply], cutoff)  # for a person to check
                    await session.commit()
                return 0
            # the post locked (PostgreSQL) before the reply: an erasure under way finishes first, or waits
            mention = await session.get(Mention, reply.mention_id, with_for_update={"read": True}) \
                if reply.mention_id else None
            if mention is not None and erased(mention):
                await cancel_replies(session, [reply.id], statuses=(expect,))
                await session.commit()
                return 0
            if mention is not None and mention.deleted and await cancel_public_to_deleted(
                    session, [reply.id], statuses=(expect,)):
                await session.commit()
                return 0
            connector = self.connectors.get(reply.platform)
            if self.dry_run or connector is None:
                reply.status = "dry_run"
                reply.error = None if self.dry_run else f"no connector for {reply.platform}"
                await session.commit()
                return 0
            if await hold_back(session, reply):
                return 0
            if reply.kind == "status" and (await session.execute(  # its incident fixed since it was picked
                    SUPERSEDE_FIXED.where(_R.id == reply.id, _R.status == expect))).rowcount:
                await session.commit()
                log.info("reply %s: its incident was fixed since; superseded", reply.id)
                return 0
            author = await session.get(Author, mention.author_id) if mention and mention.author_id else None
            claimed = await session.execute(update(Reply).where(Reply.id == reply.id, Reply.status == expect)
                                            .values(status="sending", claimed_at=self.clock())
                                            .execution_options(synchronize_session=False))
            if claimed.rowcount != 1:
                await session.rollback()
                return 0  # another process took it
            await session.refresh(reply)  # the text as claimed (a waiting status reply may have been updated)
            await session.commit()
            action = Action(
                kind="public_reply" if reply.visibility == "public" else "private_message",
                platform=reply.platform, target_external_id=mention.external_id if mention else None,
                text=reply.text, recipient_id=author.platform_user_id if author else None,
                recipient_handle=author.handle if author else None,
            )
            try:
                result = await connector.perform(action)
            except Exception as exc:  # noqa: BLE001 - a platform error must not kill the stage
                result = None
                error = f"{type(exc).__name__}: {exc}"
            status = "sent" if result and result.ok else "unknown" if result and result.uncertain else "failed"
            error = None if result and result.ok else (result.error if result else error)
            if status == "unknown":  # it may be on the platform: an agent looks before sending it again
                error = f"no answer in time, it may have been posted; check the platform ({error})"
            await record_reply_outcome(session, reply, {
                "status": status, "error": error, "external_ids": list(result.external_ids) if result else [],
                "sent_at": self.clock()})
            await session.commit()
            log.info("reply %s %s on %s", reply.id, status, reply.platform)
            return 1


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
                log.error("the pacer's pass: %s failed (%s)", what, type(exc).__name__,
                          extra={"error_type": type(exc).__name__})

    await every(interval_s, one_pass, stop, what="the pacer's pass", logger=log)


async def cancel_public_to_deleted(session: AsyncSession, reply_ids: list[int], *,
                                   statuses: tuple[str, ...] = ("pending",)) -> list[int]:
    """Cancel those of these public replies, still in ``statuses``, whose post was deleted on its
    platform since they were queued: the platform would refuse them, so nothing is sent and the
    reason (:func:`escalation.public_guard.gone_refusal`) is kept as the reply's error."""
    return await cancel_where(session, reply_ids, statuses, (Reply.visibility == "public", Mention.deleted.is_(True)),
                              lambda r: {"status": CANCELLED, "error": gone_refusal(r).reason}, "reply.cancelled",
                              "deleted", "public, and their post was deleted on its platform")


async def pending_replies(session, mention_ids: list[int]) -> list[int]:  # noqa: ANN001
    return list(await session.scalars(PENDING, {"ids": list(mention_ids)}))
