"""The care team's console: the live queue, a conversation, claiming, replying, taking private.

Collisions: a claim is one conditional UPDATE (free, mine, or idle past the claim TTL), so two
agents cannot both hold a conversation; replying needs the claim; resolving a conversation another
agent holds is an explicit take-over; and a reply is refused when another agent answered since the
page was loaded (the form carries the last reply id seen), so nobody answers twice unknowingly.
A refused form never loses what was typed: a browser is sent back to the conversation with the
message and the draft (console.flash). Every change is pushed to the other agents' live pages.
Moderators (a notify alert links here) read a conversation; its forms are the agents'.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from aiohttp import web
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from community import moderation
from community.routing import PRIVATE_SENSITIVITY
from console import events, flash
from console.auth import require
from console.error_pages import wants_html
from console.keys import PRINCIPAL, RUNTIME
from console.paths import path_id
from console.queue_data import (
    CLAIM_TTL,
    claim_is_live,
    clean_filters,
    conversation_view,
    newer_human_replies,
    queue_items,
)
from console.render import render
from console.suggestions import suggestions_for
from escalation.public_guard import public_reply_refusal
from models import Conversation, Mention, ModerationAction, Reply
from models.base import utcnow
from service.audit import record
from service.dispatch import Dispatcher
from triage.protocol import DEFAULT_ISSUE_TYPES, SENSITIVITY_LABELS, SENTIMENT_LABELS

AGENTS = ("agent",)
READERS = ("agent", "moderator")
MAX_REPLY = 10_000
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def clean_text(value: Any, *, limit: int = MAX_REPLY) -> str:
    """User-written text for storage: no NUL or lone surrogates (databases refuse them)."""
    text = str(value or "").replace("\x00", "").strip()
    text = text.encode("utf-8", "replace").decode("utf-8")
    if len(text) > limit:
        raise web.HTTPBadRequest(reason=f"text longer than {limit} characters")
    return text


async def _form(request: web.Request) -> Any:
    return await request.post() if request.content_type in (
        "application/x-www-form-urlencoded", "multipart/form-data") else {}


# what the queue can hold: security and fraud posts are routed private, never to the queue
QUEUE_SENSITIVITIES = tuple(s for s in SENSITIVITY_LABELS if s not in PRIVATE_SENSITIVITY)


def _filter_options() -> dict[str, Any]:
    return {"issue_types": DEFAULT_ISSUE_TYPES, "sentiments": SENTIMENT_LABELS, "sensitivities": QUEUE_SENSITIVITIES}


def _mention_id(value: Any) -> int | None:
    """A mention id from a form or query; None when it is not one (the default post is used)."""
    raw = str(value or "")
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) < 2**62 else None


@require(*AGENTS)
async def queue_page(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    filters = clean_filters(request.query)
    async with rt.db.session() as session:
        items = await queue_items(session, filters)
        channels = sorted(set(await session.scalars(select(Mention.platform).distinct())))
    return render(request, "queue.html", items=items, filters=filters, channels=channels, **_filter_options())


@require(*AGENTS)
async def queue_rows(request: web.Request) -> web.Response:
    """The queue's rows alone, for the live page to swap in when something changes."""
    rt = request.app[RUNTIME]
    async with rt.db.session() as session:
        filters = clean_filters(request.query)
        items = await queue_items(session, filters)
    return render(request, "queue_rows.html", items=items, filters=filters)


@require("agent", "moderator")
async def queue_events(request: web.Request) -> web.StreamResponse:
    return await events.stream(request)


@require(*READERS)
async def conversation_page(request: web.Request) -> web.Response:
    """The conversation; ``?mention=ID`` answers that post (its author's context, its suggestions)."""
    carried = flash.take(request)
    focus = _mention_id(request.query.get("mention")) or carried.get("mention")
    response = await _conversation(
        request, error=carried.get("error"), draft=carried.get("draft") or "", focus=focus,
        override=bool(carried.get("override")), confirm=bool(carried.get("confirm")), offer=carried.get("offer"),
        visibility=carried.get("visibility"), tags=carried.get("tags"))
    flash.forget(request, response)
    return response


async def _conversation(request: web.Request, *, error: str | None = None, status: int = 200,
                        draft: str = "", override: bool = False, confirm: bool = False, focus: int | None = None,
                        offer: str | None = None, visibility: str | None = None,
                        tags: str | None = None) -> web.Response:
    """The conversation page. A refused form (``error`` on a POST) sends a browser back to the page
    with the message and what was typed, so a reload neither re-posts nor meets a 405; other
    clients get the page in place, with the refusal's status."""
    rt, p = request.app[RUNTIME], request[PRINCIPAL]
    conv_id = path_id(request)
    if error and request.method == "POST" and wants_html(request):
        moved = flash.redirect(request, f"/conversations/{conv_id}", error=error, draft=draft, mention=focus,
                               override=override, confirm=confirm, offer=offer, visibility=visibility, tags=tags)
        if moved is not None:
            return moved
    read_only = p.role == "moderator"  # a moderator reads the thread; the forms and the customer are the agents'
    async with rt.db.session() as session:
        view = await conversation_view(session, conv_id, viewer=p.actor, focus=focus, with_customer=not read_only)
        if view is None:
            raise web.HTTPNotFound(reason="no such conversation")
        target = await session.get(Mention, view["target_id"]) if view["target_id"] else None
        suggestions = await suggestions_for(session, target) if target is not None and not read_only else []
        held = set(await session.scalars(select(ModerationAction.mention_id).where(
            ModerationAction.mention_id.in_([m["id"] for m in view["mentions"]]),
            ModerationAction.action == "hold", ModerationAction.status == "pending")))
    return render(request, "conversation.html", status=status, view=view, suggestions=suggestions, held=held,
                  target_id=view["target_id"], error=error, draft=draft, override=override,
                  confirm=confirm, offer=offer, visibility=visibility, tags=tags, read_only=read_only,
                  draft_id=uuid.uuid4().hex, claim_ttl_minutes=int(CLAIM_TTL.total_seconds() // 60))


async def try_claim(session: Any, conv_id: int, user_id: int, *, force: bool = False) -> bool:
    """Claim atomically: free, already mine, or idle past the TTL (or ``force``, a take-over)."""
    now = utcnow()
    stmt = update(Conversation).where(Conversation.id == conv_id)
    if not force:
        stmt = stmt.where(or_(Conversation.claimed_by.is_(None), Conversation.claimed_by == user_id,
                              Conversation.claimed_at.is_(None), Conversation.claimed_at < now - CLAIM_TTL))
    result = await session.execute(stmt.values(claimed_by=user_id, claimed_at=now))
    return result.rowcount == 1


async def _holder(session: Any, conv_id: int) -> str:
    from models import User

    conv = await session.get(Conversation, conv_id)
    user = await session.get(User, conv.claimed_by) if conv and conv.claimed_by else None
    return user.username if user else "someone"


def _back(conv_id: int) -> web.HTTPFound:
    return web.HTTPFound(f"/conversations/{conv_id}")


async def _existing(session: Any, conv_id: int) -> Conversation:
    conv = await session.get(Conversation, conv_id)
    if conv is None:
        raise web.HTTPNotFound(reason="no such conversation")
    return conv


@require(*AGENTS)
async def claim(request: web.Request) -> web.Response:
    rt, p = request.app[RUNTIME], request[PRINCIPAL]
    conv_id = path_id(request)
    form = await _form(request)
    force = form.get("force") == "1"
    async with rt.db.session() as session:
        await _existing(session, conv_id)
        ok = await try_claim(session, conv_id, p.user_id, force=force)
        if not ok:
            holder = await _holder(session, conv_id)
            await session.rollback()
            if request.headers.get("Accept", "").startswith("application/json"):
                return web.json_response({"claimed": False, "claimed_by": holder}, status=409)
            return await _conversation(request, status=409,
                                           error=f"{holder} is working on this conversation.")
        record(session, p.actor, "conversation.taken_over" if force else "conversation.claimed",
               "conversation", conv_id)
        await session.commit()
    events.emit(request, "claimed", [], conversation_id=conv_id, by=p.username)
    if request.headers.get("Accept", "").startswith("application/json"):
        return web.json_response({"claimed": True, "claimed_by": p.username})
    raise _back(conv_id)


@require(*AGENTS)
async def release(request: web.Request) -> web.Response:
    rt, p = request.app[RUNTIME], request[PRINCIPAL]
    conv_id = path_id(request)
    async with rt.db.session() as session:
        await _existing(session, conv_id)
        result = await session.execute(update(Conversation).where(
            Conversation.id == conv_id, Conversation.claimed_by == p.user_id).values(claimed_by=None, claimed_at=None))
        if result.rowcount:
            record(session, p.actor, "conversation.released", "conversation", conv_id)
        await session.commit()
    events.emit(request, "released", [], conversation_id=conv_id, by=p.username)
    raise _back(conv_id)


async def dispatch(request: web.Request, reply_ids: list[int]) -> None:
    rt = request.app[RUNTIME]
    await Dispatcher.for_settings(rt.db, rt.connectors, rt.settings).deliver(reply_ids)


@require(*AGENTS)
async def reply(request: web.Request) -> web.Response:
    rt, p = request.app[RUNTIME], request[PRINCIPAL]
    conv_id = path_id(request)
    form = await _form(request)
    text = clean_text(form.get("text"))
    draft_id = re.sub(r"[^a-f0-9]", "", str(form.get("draft_id", "")))[:32] or uuid.uuid4().hex
    if not text:
        return await _conversation(request, status=400, error="The reply is empty.")
    try:
        seen = int(form.get("seen_reply_id", "0") or 0)
        mention_id = int(form.get("mention_id", "0") or 0)
    except ValueError as exc:
        raise web.HTTPBadRequest(reason="seen_reply_id and mention_id must be integers") from exc
    visibility = "private" if form.get("visibility") == "private" else "public"
    kept = {"draft": text, "focus": mention_id or None, "visibility": visibility}  # what a refusal shows back
    async with rt.db.session() as session:
        conv = await _existing(session, conv_id)
        if conv.status != "open":
            return await _conversation(request, status=409, offer="reopen", **kept,
                                       error="This conversation was resolved; your reply was not sent. "
                                             "Reopen it to send your draft.")
        if not await try_claim(session, conv_id, p.user_id):
            holder = await _holder(session, conv_id)
            await session.rollback()
            return await _conversation(request, status=409, **kept,
                                       error=f"{holder} is working on this conversation; your reply was not sent.")
        if form.get("confirm") != "1":
            newer = await newer_human_replies(session, conv_id, seen, p.actor)
            if newer:
                who = ", ".join(sorted({r.sent_by.split(":", 1)[-1] for r in newer}))
                await session.rollback()
                return await _conversation(request, status=409, confirm=True, **kept,
                                           error=f"{who} replied while you were writing. Read it, then send again "
                                                 "if yours is still needed.")
        mention = await session.get(Mention, mention_id) if 0 < mention_id < 2**62 else None
        if mention is None or mention.conversation_id != conv_id:
            await session.rollback()
            raise web.HTTPBadRequest(reason="mention_id is not part of this conversation")
        if visibility == "public":
            refusal = await public_reply_refusal(session, mention, text)
            if refusal and not (refusal.overridable and form.get("public_anyway") == "1"):
                await session.rollback()
                return await _conversation(request, status=422, error=f"Not sent: {refusal.reason}.",
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
            raise _back(conv_id) from None
        reply_id = row.id
    await dispatch(request, [reply_id])
    events.emit(request, "replied", [mention.id], conversation_id=conv_id, by=p.username)
    if form.get("resolve") == "1":
        holder = await _resolve(request, conv_id)
        if holder:  # taken over between the send and the resolve: sent, but left to them
            return await _conversation(request, status=409, focus=mention.id,
                                       error=f"Sent, but not resolved: {holder} took this conversation over.")
    raise _back(conv_id)


@require(*AGENTS)
async def take_private(request: web.Request) -> web.Response:
    """One click on the post picked in "Reply to": open (or join) its author's case, hide exposed
    data, post the neutral public notice and DM the secure link (escalation.handoff), then assign the
    case to the agent (a case another agent holds stays theirs: taking it over is its own step)."""
    from escalation.cases import CaseTaken, assign
    from escalation.handoff import escalate_mention

    rt, p = request.app[RUNTIME], request[PRINCIPAL]
    conv_id = path_id(request)
    form = await _form(request)
    async with rt.db.session() as session:
        await _existing(session, conv_id)
        try:
            mention_id = int(form.get("mention_id", "0") or 0)
        except ValueError as exc:
            raise web.HTTPBadRequest(reason="mention_id must be an integer") from exc
        mention = await session.get(Mention, mention_id) if 0 < mention_id < 2**62 else None
        if mention is None or mention.conversation_id != conv_id:
            raise web.HTTPBadRequest(reason="mention_id is not part of this conversation")
        if not await try_claim(session, conv_id, p.user_id):
            holder = await _holder(session, conv_id)
            await session.rollback()
            return await _conversation(request, status=409, focus=mention_id,
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


async def _resolve(request: web.Request, conv_id: int, *, force: bool = False) -> str | None:
    """Resolve, unless another agent holds a live claim (then their name is returned and nothing
    changes): one conditional UPDATE, like the claim. ``force`` is the explicit take-over, audited."""
    rt, p = request.app[RUNTIME], request[PRINCIPAL]
    async with rt.db.session() as session:
        conv = await _existing(session, conv_id)
        if conv.status == "resolved":
            return None
        held_by_other = claim_is_live(conv) and conv.claimed_by != p.user_id
        stmt = update(Conversation).where(Conversation.id == conv_id, Conversation.status != "resolved")
        if not force:
            stmt = stmt.where(or_(Conversation.claimed_by.is_(None), Conversation.claimed_by == p.user_id,
                                  Conversation.claimed_at.is_(None), Conversation.claimed_at < utcnow() - CLAIM_TTL))
        holder = await _holder(session, conv_id) if held_by_other else None
        result = await session.execute(stmt.values(status="resolved", claimed_by=None, claimed_at=None))
        if result.rowcount != 1:
            await session.rollback()
            conv = await _existing(session, conv_id)
            return None if conv.status == "resolved" else await _holder(session, conv_id)
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
    form = await _form(request)
    if form.get("reopen") == "1":
        rt, p = request.app[RUNTIME], request[PRINCIPAL]
        draft = clean_text(form.get("draft"))
        async with rt.db.session() as session:
            conv = await _existing(session, conv_id)
            if conv.status != "open":
                conv.status = "open"
                record(session, p.actor, "conversation.reopened", "conversation", conv_id)
            await session.commit()
        events.emit(request, "reopened", [], conversation_id=conv_id, by=p.username)
        if draft:  # back to the page with the reply form holding the text again
            moved = flash.redirect(request, f"/conversations/{conv_id}", draft=draft,
                                   mention=_mention_id(form.get("mention_id")))
            if moved is not None:
                return moved
            return await _conversation(request, draft=draft, focus=_mention_id(form.get("mention_id")))
        raise _back(conv_id)
    holder = await _resolve(request, conv_id, force=form.get("force") == "1")
    if holder:
        return await _conversation(request, status=409, offer="resolve_take_over",
                                   error=f"{holder} is working on this conversation: it was not resolved. "
                                         "Take it over to resolve it.")
    raise web.HTTPFound("/queue")


@require(*AGENTS)
async def report(request: web.Request) -> web.Response:
    """Ask the moderators to review a post of this conversation (abuse, a threat, a doxxing): it
    joins the moderation queue as a hold with the agent's note. No claim needed: nothing is sent."""
    rt, p = request.app[RUNTIME], request[PRINCIPAL]
    conv_id = path_id(request)
    form = await _form(request)
    note = clean_text(form.get("note"), limit=1000)
    try:
        mention_id = int(form.get("mention_id", "0") or 0)
    except ValueError as exc:
        raise web.HTTPBadRequest(reason="mention_id must be an integer") from exc
    if not note:
        return await _conversation(request, status=400, error="Say why the post needs a moderator.")
    async with rt.db.session() as session:
        await _existing(session, conv_id)
        mention = await session.get(Mention, mention_id) if 0 < mention_id < 2**62 else None
        if mention is None or mention.conversation_id != conv_id:
            raise web.HTTPBadRequest(reason="mention_id is not part of this conversation")
        if not mention.is_public:
            raise web.HTTPBadRequest(reason="only public posts go to the moderators")
        await moderation.report(session, mention, p.actor, note)
        await session.commit()
    events.emit(request, "reported", [mention_id], conversation_id=conv_id, by=p.username)
    raise _back(conv_id)


def parse_tags(raw: Any) -> list[str]:
    """The conversation's new tags. A tag that is not one (it would be dropped) refuses the whole
    change: silently keeping the rest would also silently wipe the tags it was meant to replace."""
    tags = []
    for part in re.split(r"[,\s]+", str(raw or "").lower()):
        if part and not TAG_RE.match(part):
            raise web.HTTPBadRequest(reason=f"a tag is 1-40 letters a-z, digits, '-' or '_', starting with a "
                                            f"letter or digit: {part[:40]!r} is not")
        if part and part not in tags:
            tags.append(part)
    if len(tags) > 20:
        raise web.HTTPBadRequest(reason="at most 20 tags")
    return tags


@require(*AGENTS)
async def set_tags(request: web.Request) -> web.Response:
    rt, p = request.app[RUNTIME], request[PRINCIPAL]
    conv_id = path_id(request)
    raw = str((await _form(request)).get("tags") or "")[:2000]
    try:
        tags = parse_tags(raw)
    except web.HTTPBadRequest as exc:  # shown on the conversation, with what was typed
        async with rt.db.session() as session:
            await _existing(session, conv_id)
        return await _conversation(request, status=400, error=exc.reason, tags=raw)
    async with rt.db.session() as session:
        conv = await _existing(session, conv_id)
        conv.tags = tags
        record(session, p.actor, "conversation.tagged", "conversation", conv_id, tags=tags)
        await session.commit()
    events.emit(request, "tagged", [], conversation_id=conv_id, by=p.username)
    raise _back(conv_id)


def routes() -> list[web.RouteDef]:
    cid = "/conversations/{id:\\d+}"
    return [
        web.get("/queue", queue_page),
        web.get("/queue/rows", queue_rows),
        web.get("/queue/events", queue_events),
        web.get(cid, conversation_page),
        web.post(cid + "/claim", claim),
        web.post(cid + "/release", release),
        web.post(cid + "/reply", reply),
        web.post(cid + "/private", take_private),
        web.post(cid + "/resolve", resolve),
        web.post(cid + "/tags", set_tags),
        web.post(cid + "/report", report),
    ]
