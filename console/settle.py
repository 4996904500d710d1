"""Settling a send whose outcome nobody knows (``unknown``: its sender was killed mid platform call,
:mod:`service.stranded`): a person looked on the platform and says what happened there. Used by the
console's forms (:mod:`console.settle_forms`, :mod:`console.moderation`) and the bot API
(:mod:`console.api.settle`).

* A reply was posted: ``sent``, with the platform's id of it when one is pasted
  (:mod:`console.posted_ids`). Or it was not: back to ``pending`` and delivered as the console
  delivers a reply (:func:`console.replies.dispatch`: the dispatcher's hide-first, erasure, deleted-post
  and held-back rules), after the public guard its words passed when they were written (an agent's or
  a bot's own text; a person may again overrule an overridable refusal, a bot never), and not while
  another agent holds the conversation.
* A moderation action happened: ``done``. Or it is tried again: ``queued`` with its interruption count
  deliberately reset to 0 (audited with the count it had), performed by the pacer's pass like one the
  sweep put back; an action of the bot API, which the pacer leaves alone, is performed at once with the
  API's own kinds. Showing a post again (approve, unhide) is refused while it exposes personal data.

Each is one conditional UPDATE from ``unknown``: a late answer of the platform recorded meanwhile
(:func:`service.stranded.record_reply_outcome`, ``moderation.late_result``) or another person's
settling wins, and this one changes nothing (:class:`Refused`, 409). Sending a reply again starts a
new attempt (its ``send_attempt`` raised in that same UPDATE): should the interrupted call answer
after all, its answer is never recorded over the new attempt's, and a "posted" from it is audited
(``reply.stale_posted``/``reply.posted_twice``, with both platform ids): the reply may be out twice;
while the new attempt has not posted, that "posted" is the reply's (``sent``, and it is not sent
again). Trying a moderation action again starts a new attempt too (its ``send_attempt``, migration
0017): the interrupted call's answer is then audited ``moderation.stale_result``, never recorded.
Audited with ids only: ``reply.settled`` and ``moderation.action_settled`` (the outcome),
``reply.sent_again`` and ``moderation.action_retried``. A reply out twice loses one copy with
:func:`copy_gone` (``reply.copy_deleted``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from sqlalchemy import select, update

from community.decisions import EXPOSED, exposes_personal_data
from console.api.actions import as_asked, record_effect
from console.claims import holder_name, try_claim
from console.keys import PRINCIPAL, RUNTIME
from console.posted_ids import NotAnId, posted_id
from console.queue_data import claim_is_live
from console.replies import dispatch
from escalation.public_guard import gone_refusal, platform_name, public_reply_refusal
from listener.protocol import Action, ActionResult
from models import Conversation, Mention, ModerationAction, Reply, User
from models.base import utcnow
from models.mentions import ERASED_TEXT
from service import duplicates
from service.audit import record
from service.privacy_actions import perform_actions
from service.stranded import API_RULE, HELD, SETTLES

UNKNOWN = "unknown"
GUARDED = ("agent", "bot_api")  # replies whose free text passed the public guard when written
REPLY_OUTCOMES = ("posted", "not_posted")
ACTION_OUTCOMES = ("happened", "not_happened")


class Refused(Exception):
    """Nothing was changed: ``status`` is the HTTP status a form or the API answers with."""

    def __init__(self, status: int, message: str, *, overridable: bool = False, current: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.overridable, self.current = status, message, overridable, current


@dataclass
class Outcome:
    status: str  # the row's status now
    message: str  # what the person (or bot) is told


async def _take(session: Any, model: Any, row_id: int, **values: Any) -> bool:
    """The one conditional statement: from ``unknown`` only (it locks the row until the commit)."""
    done = await session.execute(update(model).where(model.id == row_id, model.status == UNKNOWN).values(**values)
                                 .execution_options(synchronize_session=False))
    return done.rowcount == 1


async def _conflict(session: Any, model: Any, row_id: int) -> Refused:
    await session.rollback()
    now = await session.scalar(select(model.status).where(model.id == row_id))
    what = "reply" if model is Reply else "moderation action"
    return Refused(409, f"this {what} is no longer unknown: it is {now} now (its platform answered after all, "
                        "or someone settled it first); nothing was changed", current=now)


Settled = TypeVar("Settled", Reply, ModerationAction)


async def _unknown(session: Any, model: type[Settled], row_id: int, noun: str) -> Settled:
    """The row to settle: 404 when there is none, 409 (:func:`_conflict`) when it is no longer unknown."""
    row = await session.get(model, row_id)
    if row is None:
        raise Refused(404, f"no such {noun}")
    if row.status != UNKNOWN:
        raise await _conflict(session, model, row_id)
    return row


async def reply_posted(request: web.Request, reply_id: int, pasted: str | None) -> Outcome:
    """The reply is on its platform: ``sent`` (its time: when it was claimed), with its id if pasted."""
    actor = request[PRINCIPAL].actor
    async with request.app[RUNTIME].db.session() as session:
        reply = await _unknown(session, Reply, reply_id, "reply")
        mention = await session.get(Mention, reply.mention_id) if reply.mention_id else None
        try:
            found = posted_id(reply.platform, pasted, visibility=reply.visibility,
                              post_url=mention.url if mention else None,
                              post_id=mention.external_id if mention else None)
        except NotAnId as exc:
            raise Refused(422, str(exc)) from None
        if not await _take(session, Reply, reply_id, status="sent", error=None):
            raise await _conflict(session, Reply, reply_id)
        reply = await session.get(Reply, reply_id, populate_existing=True)
        reply.sent_at = reply.claimed_at or utcnow()
        if found and found not in (reply.external_ids or []):
            reply.external_ids = [*(reply.external_ids or []), found]
        record(session, actor, "reply.settled", "reply", reply_id, mention_id=reply.mention_id, kind=reply.kind,
               outcome="posted", external_id=found)
        await session.commit()
    return Outcome("sent", f"Recorded as posted on {platform_name(reply.platform)}"
                           + (f" (id {found})." if found else "."))


async def reply_again(request: web.Request, reply_id: int, *, override: bool = False) -> Outcome:
    """The reply is not on its platform: send it again, once (see the module doc). ``override``: the
    person overrules an overridable refusal of the public guard (audited ``reply.public_override``)."""
    p = request[PRINCIPAL]
    db = request.app[RUNTIME].db
    async with db.session() as session:
        reply = await _unknown(session, Reply, reply_id, "reply")
        if reply.text == ERASED_TEXT:
            raise Refused(409, "its words were erased on a privacy request: there is nothing to send again")
        conv = await session.get(Conversation, reply.conversation_id) if reply.conversation_id else None
        if conv is not None and claim_is_live(conv) and conv.claimed_by != p.user_id:
            holder = await session.scalar(select(User.username).where(User.id == conv.claimed_by))
            raise Refused(409, f"{holder or 'someone'} is working on this conversation: nothing was sent again")
        mention = await session.get(Mention, reply.mention_id) if reply.mention_id else None
        if reply.visibility == "public" and reply.kind in GUARDED and mention is not None \
                and gone_refusal(mention) is None:  # a gone post: the dispatcher cancels it, saying why
            refusal = await public_reply_refusal(session, mention, reply.text)
            if refusal and not (refusal.overridable and override):
                raise Refused(422, f"Not sent again: {refusal.reason}.", overridable=refusal.overridable)
            if refusal:  # the person judged it not a private matter after all, as when it was written
                record(session, p.actor, "reply.public_override", "mention", mention.id, reason=refusal.reason)
        # a new attempt: the interrupted one's answer, should it come after all, no longer counts as the reply's
        if not await _take(session, Reply, reply_id, status="pending", error=None, claimed_at=None,
                           send_attempt=Reply.send_attempt + 1):
            raise await _conflict(session, Reply, reply_id)
        record(session, p.actor, "reply.sent_again", "reply", reply_id, mention_id=reply.mention_id, kind=reply.kind)
        await session.commit()
    await dispatch(request, [reply_id])
    async with db.session() as session:
        reply = await session.get(Reply, reply_id)
    return Outcome(reply.status, _sent_again(reply))


def _sent_again(reply: Reply) -> str:
    where = platform_name(reply.platform)
    if reply.status == "sent":
        return f"Sent again on {where}."
    if reply.status == "dry_run":
        return "Recorded again (dry run: nothing goes to the platform)."
    if reply.status in ("pending", "queued") and (reply.error or "").startswith(HELD):
        return f"Not sent yet, {reply.error}."
    if reply.status == "queued":
        return "Queued again: it goes with its channel's pace."
    if reply.status == UNKNOWN:
        return f"Sent again, and again {where} did not answer: it may have been posted; check it there."
    if reply.status in ("failed", "cancelled"):
        return f"Not sent again: {reply.error or reply.status}."
    return f"Sent again: it is {reply.status} now."


async def action_happened(request: web.Request, action_id: int) -> Outcome:
    """The action is done on its platform: ``done``, and for the bot API's own its effect here."""
    actor = request[PRINCIPAL].actor
    async with request.app[RUNTIME].db.session() as session:
        await _unknown(session, ModerationAction, action_id, "moderation action")
        if not await _take(session, ModerationAction, action_id, status="done"):
            raise await _conflict(session, ModerationAction, action_id)
        row = await session.get(ModerationAction, action_id, populate_existing=True)
        row.details = {k: v for k, v in (row.details or {}).items() if k != "error"}
        mention = await session.get(Mention, row.mention_id)
        if row.rule == API_RULE and mention is not None:  # its request died before recording it
            await record_effect(session, mention, row.action, row.actor)
        record(session, actor, "moderation.action_settled", "moderation_action", action_id,
               mention_id=row.mention_id, kind=row.action, outcome="happened")
        await session.commit()
    where = platform_name(mention.platform if mention else "")
    held = " Public replies held back for it go with the pacer's next pass." if row.action in SETTLES else ""
    return Outcome("done", f"Recorded: the {row.action} happened on {where}.{held}")


async def action_again(request: web.Request, action_id: int) -> Outcome:
    """The action did not happen on its platform: try it again (see the module doc)."""
    p, rt = request[PRINCIPAL], request.app[RUNTIME]
    async with rt.db.session() as session:
        row = await _unknown(session, ModerationAction, action_id, "moderation action")
        mention = await session.get(Mention, row.mention_id)
        showing = row.action in ("approve", "unhide") and mention is not None
        if showing and await exposes_personal_data(session, mention):
            raise Refused(409, EXPOSED)
        # a new attempt: the interrupted call's answer, should it come after all, is no longer the action's
        if not await _take(session, ModerationAction, action_id, status="queued",
                           send_attempt=ModerationAction.send_attempt + 1):
            raise await _conflict(session, ModerationAction, action_id)
        # read once the update locked the row: an erasure committed before left its details so
        row = await session.get(ModerationAction, action_id, populate_existing=True)
        before = (row.details or {}).get("interrupted")
        row.details = {**{k: v for k, v in (row.details or {}).items() if k != "error"}, "interrupted": 0}
        record(session, p.actor, "moderation.action_retried", "moderation_action", action_id,
               mention_id=row.mention_id, kind=row.action, interrupted_before=before, interrupted_reset=True)
        await session.commit()
    where = platform_name(mention.platform if mention else "")
    if row.rule != API_RULE:
        return Outcome("queued", f"Queued: the {row.action} is performed again on {where} within seconds, as after "
                                 "an interruption (its count of interruptions starts again from 0).")
    return await _perform_api_action(request, action_id, where)


async def _perform_api_action(request: web.Request, action_id: int, where: str) -> Outcome:
    """The pacer leaves the API's actions alone (its own kinds: ``remove`` deletes a Discourse post):
    performed here, as the API performs them, and its effect recorded once done."""
    rt = request.app[RUNTIME]
    await perform_actions(rt.db, {c.platform: c for c in rt.connectors}, [action_id], dry_run=rt.settings.dry_run,
                          kind_of=as_asked)
    async with rt.db.session() as session:
        row = await session.get(ModerationAction, action_id)
        if row.status == "done":
            mention = await session.get(Mention, row.mention_id)
            await record_effect(session, mention, row.action, row.actor)
            await session.commit()
    said = {"done": f"Done on {where}.", "dry_run": "Recorded (dry run: nothing goes to the platform).",
            "cancelled": "Not performed: the post was erased on a privacy request."}
    error = (row.details or {}).get("error")
    return Outcome(row.status, said.get(row.status, f"{where} refused it: {error or row.status}."))


async def copy_gone(request: web.Request, reply_id: int, which: str, *, delete: bool) -> Outcome:
    """One copy (``which``: ``earlier`` or ``later``) of a reply that may be on its platform twice
    (:mod:`service.duplicates`) is gone: the service deletes it there (``delete``; a public reply's
    only, and not while another agent holds the conversation, as for sending again), or a person says
    it was deleted there. Its ids leave the reply's, the other copy's stay (a take-back deletes it),
    audited ``reply.copy_deleted``; the notice goes. 409 when the reply is not out twice (any more)."""
    p, rt = request[PRINCIPAL], request.app[RUNTIME]
    if which not in duplicates.COPIES:
        raise Refused(400, "say which copy is gone: earlier or later")
    async with rt.db.session() as session:
        reply, copies = await _doubled(session, reply_id)
        where = platform_name(reply.platform)
        if delete and reply.visibility != "public":
            raise Refused(422, f"a private message is not deleted from here: delete it on {where}, then say so")
        # the conversation's claim, taken atomically: two people never settle the two copies at once
        if reply.conversation_id and not await try_claim(session, reply.conversation_id, p.user_id):
            holder = await holder_name(session, reply.conversation_id)
            raise Refused(409, f"{holder} is working on this conversation: nothing was "
                               f"{'deleted' if delete else 'recorded'}")
        await session.commit()
    connector = next((c for c in rt.connectors if c.platform == reply.platform), None)
    if delete and connector is None:
        raise Refused(503, f"no connector for {where}: delete it there, then say so")
    for external_id in copies[which] if delete else []:  # a thread of tweets is deleted tweet by tweet
        try:
            done = await connector.perform(Action(kind="delete_reply", platform=reply.platform,
                                                  target_external_id=external_id, reason="posted twice"))
        except Exception as exc:  # noqa: BLE001 - reported to the person, nothing recorded
            done = ActionResult(ok=False, error=f"{type(exc).__name__}: {exc}")
        if not done.ok:
            raise Refused(502, f"{where} refused to delete {external_id}: {(done.error or 'no reason')[:200]}")
    asked = copies
    async with rt.db.session() as session:
        await session.scalar(select(Reply.id).where(Reply.id == reply_id).with_for_update())  # one recorder
        reply = await session.get(Reply, reply_id)
        copies = (await duplicates.doubled(session, {reply.id: reply.status})).get(reply.id)
        await duplicates.copy_deleted(session, reply, copies or asked, which, p.actor, by_us=delete)
        await session.commit()
    said = "Deleted" if delete else "Recorded as deleted"
    copy = "earlier attempt" if which == "earlier" else "sent again"
    if copies is None:  # settled meanwhile (the same person in another tab): the other copy is gone too
        return Outcome(reply.status, f"{said}: the {copy} copy on {where}; the other copy was settled meanwhile, so "
                                     f"the reply may no longer be on {where}: check there.")
    return Outcome(reply.status, f"{said}: the {copy} copy on {where}; the reply is there once.")


async def _doubled(session: Any, reply_id: int) -> tuple[Reply, dict[str, list[str]]]:
    reply = await session.get(Reply, reply_id)
    if reply is None:
        raise Refused(404, "no such reply")
    copies = (await duplicates.doubled(session, {reply.id: reply.status})).get(reply.id)
    if copies is None:
        raise Refused(409, "this reply is not on its platform twice (any more): a copy was deleted or the reply "
                           "taken back; nothing was changed", current=reply.status)
    return reply, copies
