"""Delivery of outbound replies and actions through the connectors, at most once.

A reply is committed as ``pending`` before anything is sent, claimed as ``sending`` (a conditional
update, committed) just before the platform call, then ``sent``/``failed``. A reply found in
``sending`` after a crash, or whose platform call went out and got no answer in time (the connector
says ``uncertain``), is marked ``unknown`` for an agent to check, never sent twice. In dry-run
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
* a reply or a platform action about a post erased before it was claimed is ``cancelled``, never
  sent (:mod:`service.privacy_actions`); the text sent is the one read as the reply was claimed;
* a public reply to a post deleted on its platform after the reply was queued is ``cancelled`` with
  the reason as its ``error`` (the platform would refuse it; the post is checked as the reply is
  claimed, in dry-run too): a private message to its author still goes;
* a public reply waits while a hide or removal of its post is ``sending`` or ``unknown`` (the post may
  still show what it was hidden for): it stays ``pending``/``queued`` with an ``error`` saying so
  ("held back: ..."), and goes with the pacer's next pass once that action is settled or a later
  removal of the post is ``done``.

Nothing stays ``sending`` for ever. Each claim is timed (``claimed_at``): a claim older than
``stranded_send_minutes`` whose sender never recorded the outcome (its process killed mid-call) is
marked ``unknown`` by :func:`sweep_stranded`, audited, for a person to check (the pacer's loop runs it),
and a claim counts against its channel's pace only for a minute. A graceful stop (:meth:`Dispatcher.halt`)
starts no new send, and a cancel waits for the platform call under way and the commit of its outcome
(:func:`finish_despite_cancel`): the act stage's message is then left for redelivery (:class:`SendsStopped`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from community import moderation
from escalation.public_guard import gone_refusal
from listener.protocol import Action
from models import Author, Mention, ModerationAction, Reply
from models.base import utcnow
from models.bulk import IDS
from service.audit import record
from service.privacy import CANCELLED, erased
from service.privacy_actions import cancel_replies, cancel_where, perform_actions

log = logging.getLogger("socialcare.dispatch")
PACED_KINDS = ("status", "status_fixed")  # incident replies to everyone affected
DEFAULT_PACED_PER_MINUTE = 60  # Settings.incident_broadcast_per_minute
PACE_WINDOW = timedelta(minutes=1)
DEFAULT_STRANDED_AFTER = timedelta(minutes=10)  # Settings.stranded_send_minutes
SWEEP_LIMIT = 500  # stranded rows marked per table and pass
INTERRUPTED = "interrupted while sending; check the platform"
HELD = "held back: "  # how the error of a public reply waiting for its post's hide begins
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
_L = ModerationAction.__table__.alias("later")
# a hide or removal of the post that may not have happened, and no later one did: its public replies wait
_UNSETTLED = (_A.action.in_(moderation.REMOVAL_ACTIONS), _A.status.in_(moderation.UNSETTLED),
              ~exists().where(_L.c.mention_id == _A.mention_id, _L.c.action.in_(moderation.REMOVAL_ACTIONS),
                              _L.c.status == "done", _L.c.id > _A.id))
UNSETTLED_HIDE = (select(_A.id, _A.status).where(_A.mention_id == bindparam("mention_id"), *_UNSETTLED)
                  .order_by(_A.id).limit(1))
NOT_HELD = or_(_R.visibility != "public", _R.mention_id.is_(None),
               ~exists().where(_A.mention_id == _R.mention_id, *_UNSETTLED))
HELD_READY = (select(_R.id).where(_R.status == "pending", _R.error.startswith(HELD, autoescape=True), NOT_HELD)
              .order_by(_R.id).limit(SWEEP_LIMIT))  # held replies whose post's hide is settled now
T = TypeVar("T")


class SendsStopped(asyncio.CancelledError):
    """The process is stopping (:meth:`Dispatcher.halt`), so no new send was started: the replies and
    actions not sent yet stay ``pending``/``queued``. A cancellation, not an error: the act stage's
    worker leaves the message unacknowledged (no attempt spent), and its redelivery sends the rest."""


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
        """A graceful stop: no send starts from now on (:class:`SendsStopped`); the one under way ends."""
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
        """:func:`sweep_stranded` with this dispatcher's clock and bound."""
        return await sweep_stranded(self.db, self.clock(), self.stranded_after)

    async def release_held(self) -> int:
        """Deliver the public replies held back for their post's hide, now that it is settled."""
        async with self.db.session() as session:
            ready = list(await session.scalars(HELD_READY))
        await self.deliver(ready)
        return len(ready)

    async def release_queued(self, now: datetime | None = None) -> int:
        """Send the queued incident replies each channel's budget allows now, oldest first; returns
        how many were sent. Safe to run in several processes: each reply is claimed before sending."""
        now = now or self.clock()
        async with self.db.session() as session:
            platforms = list(await session.scalars(select(Reply.platform).where(
                Reply.status == "queued", NOT_HELD).distinct()))
            todo: list[int] = []
            for platform in platforms:
                budget = self.paced_per_minute - await self._paced_recently(session, platform, now)
                if budget > 0:  # a reply held back for its post's hide takes no slot
                    todo += list(await session.scalars(select(Reply.id).where(
                        Reply.status == "queued", Reply.platform == platform, NOT_HELD)
                        .order_by(Reply.id).limit(budget)))
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

    async def _held(self, session: AsyncSession, reply: Reply) -> bool:
        """Is this public reply held back because a hide or removal of its post may not have happened?
        Its ``error`` then says so (its status stays): :meth:`release_held` sends it once settled."""
        if reply.visibility != "public" or reply.mention_id is None:
            return False
        hide = (await session.execute(UNSETTLED_HIDE, {"mention_id": reply.mention_id})).first()
        if hide is None:
            return False
        reply.error = (f"{HELD}hiding its post (moderation action #{hide.id}) is {hide.status}, it may still "
                       "show; it goes once the post is hidden")
        await session.commit()
        log.warning("reply %s held back: moderation action %s on its post is %s", reply.id, hide.id, hide.status)
        return True

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
            if reply.status == "sending":
                if expect == "pending":
                    reply.status, reply.error = "unknown", INTERRUPTED
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
            if await self._held(session, reply):
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
            reply.status = "sent" if result and result.ok else "unknown" if result and result.uncertain else "failed"
            reply.error = None if result and result.ok else (result.error if result else error)
            if reply.status == "unknown":  # it may be on the platform: an agent looks before sending it again
                reply.error = f"no answer in time, it may have been posted; check the platform ({reply.error})"
            reply.external_ids = list(result.external_ids) if result else []
            reply.sent_at = self.clock()
            await session.commit()
            log.info("reply %s %s on %s", reply.id, reply.status, reply.platform)
            return 1


async def run_pacer(dispatcher: Dispatcher, interval_s: float, stop: asyncio.Event) -> None:
    """The web process's loop, every ``interval_s`` until ``stop``: sends stranded in ``sending`` are
    marked ``unknown`` (:func:`sweep_stranded`), public replies held back for their post's hide go
    once it is settled, and queued incident replies leave as the channels' budgets allow."""
    from service.periodic import every

    async def one_pass() -> None:
        await dispatcher.sweep_stranded()
        await dispatcher.release_held()
        await dispatcher.release_queued()

    await every(interval_s, one_pass, stop, what="the pacer's pass", logger=log)


async def sweep_stranded(db: Any, now: datetime, older_than: timedelta) -> dict[str, list[int]]:
    """Replies and moderation actions claimed (``sending``) before ``now - older_than`` whose sender
    never recorded what the platform did (its process was killed mid-call) become ``unknown``, with
    :data:`INTERRUPTED` as their error, for a person to check: never sent or performed again blindly,
    and nothing else would move them on. A row claimed before claims were timed counts from its
    creation. Audited (ids only), logged; returns the ids marked, per kind."""
    cutoff, out = now - older_than, {"replies": [], "actions": []}
    async with db.session() as session:
        for model, kind in ((Reply, "replies"), (ModerationAction, "actions")):
            stale = (model.status == "sending", func.coalesce(model.claimed_at, model.created_at) < cutoff)
            for row in await session.scalars(select(model).where(*stale).order_by(model.id).limit(SWEEP_LIMIT)):
                values = {"error": INTERRUPTED} if model is Reply else \
                    {"details": {**(row.details or {}), "error": INTERRUPTED}}
                marked = await session.execute(update(model).where(model.id == row.id, *stale)
                                               .values(status="unknown", **values)
                                               .execution_options(synchronize_session=False))
                if marked.rowcount != 1:
                    continue  # its sender recorded it meanwhile
                out[kind].append(row.id)
                if model is Reply:
                    record(session, "system", "reply.send_interrupted", "reply", row.id, mention_id=row.mention_id,
                           kind=row.kind)
                else:
                    record(session, "system", "moderation.action_interrupted", "moderation_action", row.id,
                           mention_id=row.mention_id, kind=row.action)
        await session.commit()
    if out["replies"] or out["actions"]:
        log.warning("interrupted mid-send, now unknown (check the platform): replies %s, moderation actions %s",
                    out["replies"], out["actions"])
    return out


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
