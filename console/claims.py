"""Claims on a conversation, resolving it, and taking it over from the agent who holds it.

Collisions: a claim is one conditional UPDATE (free, mine, or idle past the claim TTL), so two
agents cannot both hold a conversation; replying needs the claim (console.replies); resolving a
conversation another agent holds is an explicit take-over, audited. A take-over offered after a
refused reply carries the draft back into the reply box (never sent by itself), and a resolve says
on the queue which conversation it resolved, with a way to reopen it (console.flash).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import or_, select, update

from console import events, flash
from console.auth import require
from console.conversation import (
    AGENTS,
    back,
    clean_text,
    existing,
    form_of,
    mention_id_of,
    render_conversation,
)
from console.keys import PRINCIPAL, RUNTIME
from console.paths import path_id
from console.queue_data import CLAIM_TTL, claim_is_live
from models import Author, Conversation, Mention
from models.base import utcnow
from service.audit import record


async def try_claim(session: Any, conv_id: int, user_id: int, *, force: bool = False) -> bool:
    """Claim atomically: free, already mine, or idle past the TTL (or ``force``, a take-over)."""
    now = utcnow()
    stmt = update(Conversation).where(Conversation.id == conv_id)
    if not force:
        stmt = stmt.where(or_(Conversation.claimed_by.is_(None), Conversation.claimed_by == user_id,
                              Conversation.claimed_at.is_(None), Conversation.claimed_at < now - CLAIM_TTL))
    result = await session.execute(stmt.values(claimed_by=user_id, claimed_at=now))
    return result.rowcount == 1


async def holder_name(session: Any, conv_id: int) -> str:
    """Who holds the conversation's claim, as a refusal names them."""
    from models import User

    conv = await session.get(Conversation, conv_id)
    user = await session.get(User, conv.claimed_by) if conv and conv.claimed_by else None
    return user.username if user else "someone"


@require(*AGENTS)
async def claim(request: web.Request) -> web.Response:
    rt, p = request.app[RUNTIME], request[PRINCIPAL]
    conv_id = path_id(request)
    form = await form_of(request)
    force = form.get("force") == "1"
    draft = clean_text(form.get("draft"))  # a reply refused while another agent held it
    async with rt.db.session() as session:
        await existing(session, conv_id)
        ok = await try_claim(session, conv_id, p.user_id, force=force)
        if not ok:
            holder = await holder_name(session, conv_id)
            await session.rollback()
            if request.headers.get("Accept", "").startswith("application/json"):
                return web.json_response({"claimed": False, "claimed_by": holder}, status=409)
            return await render_conversation(request, status=409,
                                             error=f"{holder} is working on this conversation.")
        record(session, p.actor, "conversation.taken_over" if force else "conversation.claimed",
               "conversation", conv_id)
        await session.commit()
    events.emit(request, "claimed", [], conversation_id=conv_id, by=p.username)
    if request.headers.get("Accept", "").startswith("application/json"):
        return web.json_response({"claimed": True, "claimed_by": p.username})
    if draft:
        return await _with_draft(request, conv_id, draft, form)
    raise back(conv_id)


async def _with_draft(request: web.Request, conv_id: int, draft: str, form: Any) -> web.StreamResponse:
    """Back to the conversation with the reply box holding ``draft`` again (and the post and
    visibility it was written for): the agent reads it over and sends it."""
    focus, visibility = mention_id_of(form.get("mention_id")), form.get("visibility") or None
    notice = "You took over this conversation. Your reply was not sent yet: it is in the box below."
    moved = flash.redirect(request, f"/conversations/{conv_id}", draft=draft, mention=focus, visibility=visibility,
                           notice=notice)
    if moved is not None:
        return moved
    return await render_conversation(request, draft=draft, focus=focus, visibility=visibility, notice=notice)


@require(*AGENTS)
async def release(request: web.Request) -> web.Response:
    rt, p = request.app[RUNTIME], request[PRINCIPAL]
    conv_id = path_id(request)
    async with rt.db.session() as session:
        await existing(session, conv_id)
        result = await session.execute(update(Conversation).where(
            Conversation.id == conv_id, Conversation.claimed_by == p.user_id).values(claimed_by=None, claimed_at=None))
        if result.rowcount:
            record(session, p.actor, "conversation.released", "conversation", conv_id)
        await session.commit()
    events.emit(request, "released", [], conversation_id=conv_id, by=p.username)
    raise back(conv_id)


async def resolve_unless_held(request: web.Request, conv_id: int, *, force: bool = False) -> str | None:
    """Resolve, unless another agent holds a live claim (then their name is returned and nothing
    changes): one conditional UPDATE, like the claim. ``force`` is the explicit take-over, audited."""
    rt, p = request.app[RUNTIME], request[PRINCIPAL]
    async with rt.db.session() as session:
        conv = await existing(session, conv_id)
        if conv.status == "resolved":
            return None
        held_by_other = claim_is_live(conv) and conv.claimed_by != p.user_id
        stmt = update(Conversation).where(Conversation.id == conv_id, Conversation.status != "resolved")
        if not force:
            stmt = stmt.where(or_(Conversation.claimed_by.is_(None), Conversation.claimed_by == p.user_id,
                                  Conversation.claimed_at.is_(None), Conversation.claimed_at < utcnow() - CLAIM_TTL))
        holder = await holder_name(session, conv_id) if held_by_other else None
        result = await session.execute(stmt.values(status="resolved", claimed_by=None, claimed_at=None))
        if result.rowcount != 1:
            await session.rollback()
            conv = await existing(session, conv_id)
            return None if conv.status == "resolved" else await holder_name(session, conv_id)
        if force and holder:
            record(session, p.actor, "conversation.taken_over", "conversation", conv_id, from_user=holder)
        record(session, p.actor, "conversation.resolved", "conversation", conv_id)
        await session.commit()
    events.emit(request, "resolved", [], conversation_id=conv_id, by=p.username)
    return None


@require(*AGENTS)
async def resolve(request: web.Request) -> web.Response:
    """Resolve (``force=1``: take it over from the agent holding it), or ``reopen=1`` — with the
    ``draft`` of a reply that was refused because the conversation had been resolved."""
    conv_id = path_id(request)
    form = await form_of(request)
    if form.get("reopen") == "1":
        rt, p = request.app[RUNTIME], request[PRINCIPAL]
        draft = clean_text(form.get("draft"))
        async with rt.db.session() as session:
            conv = await existing(session, conv_id)
            if conv.status != "open":
                conv.status = "open"
                record(session, p.actor, "conversation.reopened", "conversation", conv_id)
            await session.commit()
        events.emit(request, "reopened", [], conversation_id=conv_id, by=p.username)
        if draft:  # back to the page with the reply form holding the text again
            moved = flash.redirect(request, f"/conversations/{conv_id}", draft=draft,
                                   mention=mention_id_of(form.get("mention_id")))
            if moved is not None:
                return moved
            return await render_conversation(request, draft=draft,
                                             focus=mention_id_of(form.get("mention_id")))
        raise back(conv_id)
    holder = await resolve_unless_held(request, conv_id, force=form.get("force") == "1")
    if holder:
        return await render_conversation(
            request, status=409, offer="resolve_take_over",
            error=f"{holder} is working on this conversation: it was not resolved. "
                  "Take it over to resolve it.")
    async with request.app[RUNTIME].db.session() as session:
        who = await session.scalar(
            select(Author.handle).join(Mention, Mention.author_id == Author.id)
            .where(Mention.conversation_id == conv_id).order_by(Mention.created_at.desc(), Mention.id.desc()).limit(1))
    said = f"Conversation {conv_id}" + (f" with {who}" if who else "") + " resolved."
    return flash.redirect(request, "/queue", notice=said, resolved=conv_id) or web.HTTPFound("/queue")
