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
Each claim of a reply raises its ``send_attempt``, and an outcome is written for its own attempt
only: the late answer of a sender taken for dead never overwrites the attempt a person started since.

This module holds what is delivered when, in which order; the rest lives beside it, by concept:
one reply's checks, claim, call and outcome in :mod:`service.reply_delivery`, the queue's pace and
the pacer's pass in :mod:`service.pacer`, the shelter of a call from stops and cancels in
:mod:`service.sends`, stranded and held-back sends in :mod:`service.stranded`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select, update

from community import moderation
from models import ModerationAction, Reply
from models.base import utcnow
from models.bulk import IDS
from service.pacer import DEFAULT_PACED_PER_MINUTE, PACE, PacerPass, run_pacer
from service.privacy_actions import cancel_replies, perform_actions
from service.reply_delivery import ReplyDelivery, cancel_public_to_deleted
from service.sends import SendsStopped, finish_despite_cancel
from service.stranded import DEFAULT_STRANDED_AFTER, HELD, INTERRUPTED, PACED_KINDS, sweep_stranded

# imported from here by many (the stages, the console, the tests), as before they had modules of their own
__all__ = ["HELD", "INTERRUPTED", "PACED_KINDS", "Dispatcher", "SendsStopped", "finish_despite_cancel",
           "pending_replies", "run_pacer", "sweep_stranded"]
_R, _A = Reply.__table__.c, ModerationAction.__table__.c
# what every delivery asks and does, built once (models.bulk)
PENDING = select(_R.id).where(_R.mention_id.in_(IDS), _R.status.in_(("pending", "sending")))
HIDE_FIRST = (select(_A.id).where(_A.mention_id.in_(select(_R.mention_id).where(_R.id.in_(IDS), _R.visibility == "public")),
                                  _A.status == "queued", _A.action.in_(moderation.REMOVAL_ACTIONS))
              .order_by(_A.id))  # queued hides and removals of the posts the replies answer
RECORD_ONLY = update(Reply.__table__).where(_R.id.in_(IDS), _R.status == "pending").values(status="dry_run")
T = TypeVar("T")


class Dispatcher(ReplyDelivery, PacerPass):
    """Every caller's way out to the platforms (the act stage, the console, the API, the CLI, the
    pacer): :meth:`deliver` replies, :meth:`perform` moderation actions, in the order the module doc
    gives; one reply's delivery is :class:`~service.reply_delivery.ReplyDelivery`'s, the pacer's
    steps :class:`~service.pacer.PacerPass`'s."""

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

    async def _hide_first(self, reply_ids: list[int]) -> None:
        async with self.db.session() as session:
            action_ids = list(await session.scalars(HIDE_FIRST, {"ids": list(reply_ids)}))
        await self.perform(action_ids)


async def pending_replies(session, mention_ids: list[int]) -> list[int]:  # noqa: ANN001
    return list(await session.scalars(PENDING, {"ids": list(mention_ids)}))
