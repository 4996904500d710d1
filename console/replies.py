"""Answering from the console: a reply (in public or as a private message) and taking a post private.

A reply needs the claim, and is refused when another agent answered since the page was loaded (the
form carries the last reply id seen), so nobody answers twice unknowingly.
"""

from __future__ import annotations

import re
import uuid

from aiohttp import web
from sqlalchemy.exc import IntegrityError

from console import events
from console.auth import require
from console.claims import holder_name, resolve_unless_held, try_claim
from console.conversation import AGENTS, back, clean_text, existing, form_id, form_of, render_conversation
from console.keys import PRINCIPAL, RUNTIME
from console.paths import MAX_ID, parse_int, path_id
from console.queue_data import newer_human_replies
from escalation.public_guard import public_reply_refusal
from models import Mention, Reply
from models.base import utcnow
from service.audit import record
from service.dispatch import Dispatcher


async def dispatch(request: web.Request, reply_ids: list[int]) -> None:
    """Send the committed replies now (the bot API's replies go the same way)."""
    rt = request.app[RUNTIME]
    await Dispatcher.for_settings(rt.db, rt.connectors, rt.settings).deliver(reply_ids)


@require(*AGENTS)
async def reply(request: web.Request) -> web.Response:
    rt, p = request.app[RUNTIME], request[PRINCIPAL]
    conv_id = path_id(request)
    form = await form_of(request)
    text = clean_text(form.get("text"))
    draft_id = re.sub(r"[^a-f0-9]", "", str(form.get("draft_id", "")))[:32] or uuid.uuid4().hex
    if not text:
        return await render_conversation(request, status=400, error="The reply is empty.")
    seen = parse_int(str(form.get("seen_reply_id") or "0"), 0, MAX_ID - 1)  # the last reply seen; 0: none
    if seen is None:  # not "١", " 5" or past int64 (the newer-replies query would overflow)
        raise web.HTTPBadRequest(reason="seen_reply_id and mention_id must be integers")
    mention_id = form_id(form, "mention_id")
    visibility = "private" if form.get("visibility") == "private" else "public"
    kept = {"draft": text, "focus": mention_id or None, "visibility": visibility}  # what a refusal shows back
    async with rt.db.session() as session:
        conv = await existing(session, conv_id)
        if conv.status != "open":
            return await render_conversation(request, status=409, offer="reopen", **kept,
                                             error="This conversation was resolved; your reply was not sent. "
                                                   "Reopen it to send your draft.")
        if not await try_claim(session, conv_id, p.user_id):
            holder = await holder_name(session, conv_id)
            await session.rollback()
            return await render_conversation(
                request, status=409, **kept,
                error=f"{holder} is working on this conversation; your reply was not sent.")
        if form.get("confirm") != "1":
            newer = await newer_human_replies(session, conv_id, seen, p.actor)
            if newer:
                who = ", ".join(sorted({r.sent_by.split(":", 1)[-1] for r in newer}))
                await session.rollback()
                return await render_conversation(
                    request, status=409, confirm=True, **kept,
                    error=f"{who} replied while you were writing. Read it, then send again "
                          "if yours is still needed.")
        mention = await session.get(Mention, mention_id) if mention_id else None
        if mention is None or mention.conversation_id != conv_id:
            await session.rollback()
            raise web.HTTPBadRequest(reason="mention_id is not part of this conversation")
        if visibility == "public":
            refusal = await public_reply_refusal(session, mention, text)
            if refusal and not (refusal.overridable and form.get("public_anyway") == "1"):
                await session.rollback()
                return await render_conversation(request, status=422, error=f"Not sent: {refusal.reason}.",
                                                 override=refusal.overridable, **kept)
            if refusal:  # the agent judged it not a private matter after all
                record(session, p.actor, "reply.public_override", "mention", mention.id, reason=refusal.reason)
        row = Reply(dedup_key=f"agent:{draft_id}", mention_id=mention.id, conversation_id=conv_id,
                    platform=mention.platform, visibility=visibility, kind="agent", text=text,
                    template=str(form.get("template") or "")[:100] or None, status="pending", sent_by=p.actor)
        session.add(row)
        conv.last_activity_at = utcnow()
        record(session, p.actor, "reply.created", "conversation", conv_id, mention_id=mention.id,
               visibility=visibility, template=row.template)
        try:
            await session.commit()
        except IntegrityError:  # the same draft submitted twice: it was sent the first time
            await session.rollback()
            raise back(conv_id) from None
        reply_id = row.id
    await dispatch(request, [reply_id])
    events.emit(request, "replied", [mention.id], conversation_id=conv_id, by=p.username)
    if form.get("resolve") == "1":
        holder = await resolve_unless_held(request, conv_id)
        if holder:  # taken over between the send and the resolve: sent, but left to them
            return await render_conversation(
                request, status=409, focus=mention.id,
                error=f"Sent, but not resolved: {holder} took this conversation over.")
    raise back(conv_id)


@require(*AGENTS)
async def take_private(request: web.Request) -> web.Response:
    """One click on the post picked in "Reply to": open (or join) its author's case, hide exposed
    data, post the neutral public notice and DM the secure link (escalation.handoff), then assign the
    case to the agent (a case another agent holds stays theirs: taking it over is its own step)."""
    from escalation.cases import CaseTaken, assign
    from escalation.handoff import escalate_mention

    rt, p = request.app[RUNTIME], request[PRINCIPAL]
    conv_id = path_id(request)
    form = await form_of(request)
    async with rt.db.session() as session:
        await existing(session, conv_id)
        mention_id = form_id(form, "mention_id")
        mention = await session.get(Mention, mention_id) if mention_id else None
        if mention is None or mention.conversation_id != conv_id:
            raise web.HTTPBadRequest(reason="mention_id is not part of this conversation")
        if not await try_claim(session, conv_id, p.user_id):
            holder = await holder_name(session, conv_id)
            await session.rollback()
            return await render_conversation(request, status=409, focus=mention_id,
                                             error=f"{holder} is working on this conversation.")
        case, added = await escalate_mention(session, mention, rt.settings, p.actor, category="agent")
        if case.status != "resolved":
            try:
                assign(session, case, p.user_id, p.actor)
            except CaseTaken:
                pass  # joined a case another agent is working on: the conversation page names them
        record(session, p.actor, "conversation.taken_private", "conversation", conv_id, case_id=case.id)
        await session.commit()
        case_id, reply_ids = case.id, [r.id for r in added]
    await dispatch(request, reply_ids)
    events.emit(request, "taken_private", [mention_id], conversation_id=conv_id, by=p.username, case_id=case_id)
    raise web.HTTPFound(f"/conversations/{conv_id}?mention={mention_id}&case={case_id}")
