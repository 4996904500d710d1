"""Platform actions and replies about erased posts are cancelled, never performed.

An erasure cancels the moderation actions still ``queued`` for the person's posts and withdraws
their unsent replies in its own transaction (:mod:`service.privacy`). What reaches an executor
afterwards is caught here: a reply written about a post erased meanwhile, an action queued by a
review that raced the erasure, an action the executor claimed just before the erasure committed. The
dispatcher checks the post as it claims a reply, the post locked (PostgreSQL) so that an erasure
in progress finishes first (:func:`cancel_replies`); :func:`perform_actions` runs
:func:`community.moderation.execute` after cancelling the erased posts' actions, with connectors
that look the post up again right before the platform call. Either way the row becomes
``cancelled`` with reason ``erased`` (a reply's ``error``, a moderation action's
``details["cancelled"]``) and without its words, logged and audited with ids only. A platform call
already made when the erasure commits cannot be taken back. A post the retention purge emptied
counts as erased.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from community import moderation
from listener.protocol import Action, ActionResult
from models import Mention, ModerationAction, Reply
from models.bulk import update_rows
from models.mentions import ERASED_TEXT
from service.audit import record
from service.privacy import CANCELLED, ERASED, MODERATION_KEPT, erased

log = logging.getLogger("socialcare.privacy")
REFUSED = "not performed: the post was erased"  # a guarded connector's answer, then settled as cancelled
_ERASED = (Mention.deleted.is_(True), Mention.text == ERASED_TEXT)


async def cancel_actions(session: AsyncSession, action_ids: Iterable[int], *,
                         statuses: tuple[str, ...] = ("queued",)) -> list[int]:
    """Cancel those of these moderation actions, still in ``statuses``, whose post was erased."""
    rows = (await session.execute(
        select(ModerationAction.id, ModerationAction.action, ModerationAction.mention_id, ModerationAction.details)
        .join(Mention, Mention.id == ModerationAction.mention_id)
        .where(ModerationAction.id.in_(list(action_ids)), ModerationAction.status.in_(statuses), *_ERASED)
        .with_for_update(of=ModerationAction))).all()
    await update_rows(session, ModerationAction, [(a.id, {
        "status": CANCELLED, "reason": ERASED_TEXT,
        "details": {k: v for k, v in (a.details or {}).items() if k in MODERATION_KEPT} | {"cancelled": ERASED}})
        for a in rows])
    for a in rows:
        record(session, "system", "privacy.action_cancelled", "moderation_action", a.id, mention_id=a.mention_id,
               kind=a.action, cancelled=ERASED)
    if rows:
        log.info("platform action(s) %s not performed: their post was erased", [a.id for a in rows])
    return [a.id for a in rows]


async def cancel_replies(session: AsyncSession, reply_ids: Iterable[int], *,
                         statuses: tuple[str, ...] = ("pending", "queued")) -> list[int]:
    """Cancel those of these replies, still in ``statuses``, whose post was erased (their words go)."""
    return await cancel_where(session, reply_ids, statuses, _ERASED,
                              lambda r: {"status": CANCELLED, "text": ERASED_TEXT, "error": ERASED},
                              "privacy.reply_cancelled", ERASED, "their post was erased")


async def cancel_where(session: AsyncSession, reply_ids: Iterable[int], statuses: tuple[str, ...],
                       where: tuple[Any, ...], change: Callable[[Any], dict[str, Any]], action: str,
                       cancelled: str, why: str) -> list[int]:
    """Cancel those of these replies, still in ``statuses``, whose row joined to its post meets
    ``where`` (locked first: a delivery in progress finishes before); ``change`` gives each one's
    new columns (from its id, kind, mention and the post's platform, deleted and text); each is
    audited as ``action`` with ``cancelled``, ids only. Returns their ids."""
    rows = (await session.execute(
        select(Reply.id, Reply.kind, Reply.mention_id, Mention.platform, Mention.deleted, Mention.text)
        .join(Mention, Mention.id == Reply.mention_id)
        .where(Reply.id.in_(list(reply_ids)), Reply.status.in_(statuses), *where)
        .with_for_update(of=Reply))).all()
    await update_rows(session, Reply, [(r.id, change(r)) for r in rows])
    for r in rows:
        record(session, "system", action, "reply", r.id, mention_id=r.mention_id, kind=r.kind, cancelled=cancelled)
    if rows:
        log.info("reply(ies) %s not sent: %s", [r.id for r in rows], why)
    return [r.id for r in rows]


class _Guard:
    """A connector that first checks the post acted on was not erased since the action was read."""

    def __init__(self, db: Any, inner: Any, refused: list[Action]) -> None:
        self.db, self.inner, self.refused = db, inner, refused

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def perform(self, action: Action) -> ActionResult:
        if action.target_external_id is not None:
            async with self.db.session() as session:
                post = (await session.execute(select(Mention.deleted, Mention.text).where(
                    Mention.platform == action.platform, Mention.external_id == action.target_external_id))).first()
            if post is not None and erased(post):
                self.refused.append(action)
                return ActionResult(ok=False, error=REFUSED)
        return await self.inner.perform(action)


async def perform_actions(db: Any, connectors: dict[str, Any], action_ids: list[int], *, dry_run: bool,
                          dry_run_channels: frozenset[str] | set[str] = frozenset(),
                          kind_of: Callable[[str, str], str | None] = moderation.platform_kind) -> None:
    """:func:`community.moderation.execute`, with the actions of erased posts cancelled instead.
    Every executor goes through here: the stages, the dispatcher, a moderator's review
    (:mod:`console.moderation`) and the bot API (:mod:`console.api.mentions`)."""
    if not action_ids:
        return
    async with db.session() as session:
        if await cancel_actions(session, action_ids):
            await session.commit()
    refused: list[Action] = []
    await moderation.execute(db, {p: _Guard(db, c, refused) for p, c in connectors.items()}, action_ids,
                             dry_run=dry_run, dry_run_channels=dry_run_channels, kind_of=kind_of)
    if refused:  # erased while the executor held them: failed at the guard, cancelled here
        async with db.session() as session:
            await cancel_actions(session, action_ids, statuses=("failed",))
            await session.commit()
