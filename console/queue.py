"""The care team's console: the live queue, a conversation, claiming, replying, taking private.

Collisions: a claim is one conditional UPDATE (free, mine, or idle past the claim TTL), so two
agents cannot both hold a conversation; replying needs the claim; and a reply is refused when
another agent answered since the page was loaded (the form carries the last reply id seen), so
nobody answers twice unknowingly. Every change is pushed to the other agents' live pages.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from aiohttp import web
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from community import moderation
from console import events
from console.auth import require
from console.keys import PRINCIPAL, RUNTIME
from console.queue_data import (
    CLAIM_TTL,
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
MAX_REPLY = 10_000
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def path_id(request: web.Request, name: str = "id") -> int:
    """A database id from the path; anything out of range is simply not found."""
    try:
        value = int(request.match_info[name])
    except (KeyError, ValueError) as exc:
        raise web.HTTPNotFound() from exc
    if not 0 < value < 2**62:
        raise web.HTTPNotFound()
    return value


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


def _filter_options() -> dict[str, Any]:
    return {"issue_types": DEFAULT_ISSUE_TYPES, "sentiments": SENTIMENT_LABELS, "sensitivities": SENSITIVITY_LABELS}


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
        items = await queue_items(session, clean_filters(request.query))
    return render(request, "queue_rows.html", items=items)


@require("agent", "moderator")
async def queue_events(request: web.Request) -> web.StreamResponse:
    return await events.stream(request)


@require(*AGENTS)
async def conversation_page(request: web.Request) -> web.Response:
    return await _conversation(request)


async def _conversation(request: web.Request, *, error: str | None = None, status: int = 200,
                        draft: str = "", override: bool = False, confirm: bool = False) -> web.Response:
    rt = request.app[RUNTIME]
    conv_id = path_id(request)
    async with rt.db.session() as session:
        view = await conversation_view(session, conv_id, viewer=request[PRINCIPAL].actor)
        if view is None:
            raise web.HTTPNotFound(reason="no such conversation")
        target = None
        waiting = [m for m in view["mentions"] if m["route"] and m["route"]["outcome"] == "agent_queue"]
        pick = (waiting or view["mentions"] or [None])[-1]
        if pick is not None:
            target = await session.get(Mention, pick["id"])
        suggestions = await suggestions_for(session, target) if target is not None else []
        held = set(await session.scalars(select(ModerationAction.mention_id).where(
            ModerationAction.mention_id.in_([m["id"] for m in view["mentions"]]),
            ModerationAction.action == "hold", ModerationAction.status == "pending")))
    return render(request, "conversation.html", status=status, view=view, suggestions=suggestions, held=held,
                  target_id=target.id if target else None, error=error, draft=draft, override=override,
                  confirm=confirm,
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
    async with rt.db.session() as session:
        conv = await _existing(session, conv_id)
        if conv.status != "open":
            return await _conversation(request, status=409, error="This conversation is resolved; reopen it first.",
                                           draft=text)
        if not await try_claim(session, conv_id, p.user_id):
            holder = await _holder(session, conv_id)
            await session.rollback()
            return await _conversation(request, status=409, draft=text,
                                           error=f"{holder} is working on this conversation; your reply was not sent.")
        if form.get("confirm") != "1":
            newer = await newer_human_replies(session, conv_id, seen, p.actor)
            if newer:
                who = ", ".join(sorted({r.sent_by.split(":", 1)[-1] for r in newer}))
                await session.rollback()
                return await _conversation(request, status=409, draft=text, confirm=True,
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
                return await _conversation(request, status=422, draft=text, error=f"Not sent: {refusal.reason}.",
                                           override=refusal.overridable)
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
        await _resolve(request, conv_id)
    raise _back(conv_id)


@require(*AGENTS)
async def take_private(request: web.Request) -> web.Response:
    """One click: open (or join) the case, hide exposed data, post the neutral public notice and
    DM the secure link (escalation.handoff), then assign the case to the agent."""
    from escalation.cases import assign
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
            return await _conversation(request, status=409, error=f"{holder} is working on this conversation.")
        case, added = await escalate_mention(session, mention, rt.settings, p.actor, category="agent")
        if case.status != "resolved":
            assign(session, case, p.user_id, p.actor)
        record(session, p.actor, "conversation.taken_private", "conversation", conv_id, case_id=case.id)
        await session.commit()
        case_id, reply_ids = case.id, [r.id for r in added]
    await dispatch(request, reply_ids)
    events.emit(request, "taken_private", [mention_id], conversation_id=conv_id, by=p.username, case_id=case_id)
    raise web.HTTPFound(f"/conversations/{conv_id}?case={case_id}")


async def _resolve(request: web.Request, conv_id: int) -> None:
    rt, p = request.app[RUNTIME], request[PRINCIPAL]
    async with rt.db.session() as session:
        conv = await _existing(session, conv_id)
        if conv.status != "resolved":
            conv.status, conv.claimed_by, conv.claimed_at = "resolved", None, None
            record(session, p.actor, "conversation.resolved", "conversation", conv_id)
        await session.commit()
    events.emit(request, "resolved", [], conversation_id=conv_id, by=p.username)


@require(*AGENTS)
async def resolve(request: web.Request) -> web.Response:
    conv_id = path_id(request)
    form = await _form(request)
    if form.get("reopen") == "1":
        rt, p = request.app[RUNTIME], request[PRINCIPAL]
        async with rt.db.session() as session:
            conv = await _existing(session, conv_id)
            conv.status = "open"
            record(session, p.actor, "conversation.reopened", "conversation", conv_id)
            await session.commit()
        events.emit(request, "reopened", [], conversation_id=conv_id, by=p.username)
        raise _back(conv_id)
    await _resolve(request, conv_id)
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
    tags = parse_tags((await _form(request)).get("tags"))
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
