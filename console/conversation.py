"""A conversation in the care console: its page, what its forms share, and the changes that need
no claim (tags, a report to the moderators).

A refused form never loses what was typed: a browser is sent back to the conversation with the
message and the draft (console.flash). Moderators (a notify alert links here) read a conversation;
its forms are the agents'. A moderator opens only a thread the moderation page links to (it holds
a post held, reported, alerted or otherwise acted on), and reads there neither private messages,
reports of takeovers or fraud (but those held, reported or alerted) nor private replies: those are
the care team's.

A reply that may be on its platform twice — an attempt given up for dead posted after all besides
the one sent again, audited ``reply.posted_twice`` (:mod:`service.stranded`) — says so on the page,
with both copies' platform ids (linked where an address follows from the id, as the listeners build
them), so that the agent deletes one copy, or has it deleted (:func:`console.settle.copy_gone`); the
notice goes once a copy is gone or the reply is taken back (:func:`posted_twice`).
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from sqlalchemy import select

from community import moderation
from console import events, flash
from console.auth import require
from console.error_pages import wants_html
from console.keys import PRINCIPAL, RUNTIME
from console.paths import parse_id, path_id
from console.queries import in_care_team, moderated_conversations
from console.queue_data import CLAIM_TTL, conversation_view
from console.render import render
from console.suggestions import suggestions_for
from escalation.public_guard import gone_from_platform
from models import Conversation, Mention, ModerationAction
from service import duplicates
from service.audit import record

AGENTS = ("agent",)
READERS = ("agent", "moderator")
MAX_REPLY = 10_000
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_X_STATUS = re.compile(r"\d{1,25}")
_REDDIT_COMMENT = re.compile(r"t1_([a-z0-9]{1,13})")
_REDDIT_POST = re.compile(r"/r/[A-Za-z0-9_]{1,50}/comments/[a-z0-9]{1,13}/")
_DISCOURSE_POST = re.compile(r"(\d{1,18})/(\d{1,9})")


def clean_text(value: Any, *, limit: int = MAX_REPLY) -> str:
    """User-written text for storage: no NUL or lone surrogates (databases refuse them)."""
    text = str(value or "").replace("\x00", "").strip()
    text = text.encode("utf-8", "replace").decode("utf-8")
    if len(text) > limit:
        raise web.HTTPBadRequest(reason=f"text longer than {limit} characters")
    return text


async def form_of(request: web.Request) -> Any:
    """The posted form; empty for any other body (a JSON claim, say)."""
    return await request.post() if request.content_type in (
        "application/x-www-form-urlencoded", "multipart/form-data") else {}


def mention_id_of(value: Any) -> int | None:
    """A mention id from a form or query; None when it is not one (the default post is used)."""
    return parse_id(str(value or ""))


def form_id(form: Any, name: str) -> int | None:
    """An id a conversation's form names (its post, say): None when absent or empty (the handler
    says what is missing); anything not :func:`console.paths.parse_id`'s ASCII digits within range
    is a 400 (int() would read "١" as 1, " 5" and "+5" as 5, and fail on thousands of digits)."""
    raw = str(form.get(name) or "")
    value = parse_id(raw)
    if value is None and raw:
        raise web.HTTPBadRequest(reason=f"{name} must be an integer")
    return value


def back(conv_id: int) -> web.HTTPFound:
    """Where a form that was accepted returns: the conversation (a reload does not post again)."""
    return web.HTTPFound(f"/conversations/{conv_id}")


async def existing(session: Any, conv_id: int) -> Conversation:
    """The conversation, or a 404 for every form on it."""
    conv = await session.get(Conversation, conv_id)
    if conv is None:
        raise web.HTTPNotFound(reason="no such conversation")
    return conv


@require(*READERS)
async def conversation_page(request: web.Request) -> web.Response:
    """The conversation; ``?mention=ID`` answers that post (its author's context, its suggestions)."""
    carried = flash.take(request)
    focus = mention_id_of(request.query.get("mention")) or carried.get("mention")
    response = await render_conversation(
        request, error=carried.get("error"), draft=carried.get("draft") or "", focus=focus,
        override=bool(carried.get("override")), confirm=bool(carried.get("confirm")), offer=carried.get("offer"),
        visibility=carried.get("visibility"), tags=carried.get("tags"), notice=carried.get("notice"),
        settling=carried.get("settling"))
    flash.forget(request, response)
    return response


async def render_conversation(request: web.Request, *, error: str | None = None, status: int = 200,
                              draft: str = "", override: bool = False, confirm: bool = False,
                              focus: int | None = None, offer: str | None = None,
                              visibility: str | None = None, tags: str | None = None, notice: str | None = None,
                              settling: dict[str, Any] | None = None) -> web.Response:
    """The conversation page. A refused form (``error`` on a POST) sends a browser back to the page
    with the message and what was typed, so a reload neither re-posts nor meets a 405; other
    clients get the page in place, with the refusal's status. ``notice``: a done change's
    confirmation; ``settling``: a refused settling of an unknown reply (:mod:`console.settle_forms`):
    its ``reply`` id, the id or address ``pasted``, and whether the refusal is ``overridable``."""
    rt, p = request.app[RUNTIME], request[PRINCIPAL]
    conv_id = path_id(request)
    if error and request.method == "POST" and wants_html(request):
        moved = flash.redirect(request, f"/conversations/{conv_id}", error=error, draft=draft, mention=focus,
                               override=override, confirm=confirm, offer=offer, visibility=visibility, tags=tags,
                               settling=settling)
        if moved is not None:
            return moved
    read_only = p.role == "moderator"  # a moderator reads the thread; the forms and the customer are the agents'
    async with rt.db.session() as session:
        if read_only and not await moderated_conversations(session, {conv_id}):
            raise web.HTTPNotFound(reason="no such conversation")  # only a thread the moderation page links to
        view = await conversation_view(session, conv_id, viewer=p.actor, focus=focus, with_customer=not read_only,
                                       private=in_care_team(p.role))
        if view is None:
            raise web.HTTPNotFound(reason="no such conversation")
        target = await session.get(Mention, view["target_id"]) if view["target_id"] else None
        suggestions = await suggestions_for(session, target) if target is not None and not read_only else []
        held = set(await session.scalars(select(ModerationAction.mention_id).where(
            ModerationAction.mention_id.in_([m["id"] for m in view["mentions"]]),
            ModerationAction.action == "hold", ModerationAction.status == "pending")))
        twice = await posted_twice(session, view["thread"])
    return render(request, "conversation.html", status=status, view=view, suggestions=suggestions, held=held,
                  twice=twice,
                  target_id=view["target_id"], error=error, notice=notice, settling=settling or {}, draft=draft,
                  override=override, confirm=confirm, offer=offer, visibility=visibility, tags=tags, read_only=read_only,
                  draft_id=uuid.uuid4().hex, claim_ttl_minutes=int(CLAIM_TTL.total_seconds() // 60))


async def posted_twice(session: Any, thread: list[dict[str, Any]]) -> dict[int, dict[str, list[dict[str, Any]]]]:
    """The replies of this thread that may still be on their platform twice, by id
    (:func:`service.duplicates.doubled`: none once a copy is deleted or the reply taken back): the
    platform ids of the copy an earlier attempt posted after all (``earlier``) and of the attempt's
    that posted besides it (``later``), each ``{"id", "url"}`` (:func:`reply_link`)."""
    replies = {e["id"]: e for e in thread if e["type"] == "reply"}
    found = await duplicates.doubled(session, {i: e["status"] for i, e in replies.items()})
    return {i: {which: [{"id": c, "url": reply_link(replies[i]["platform"], replies[i]["visibility"], c,
                                                   replies[i].get("post_url"))} for c in copies[which]]
                for which in duplicates.COPIES}
            for i, copies in found.items()}


def reply_link(platform: str, visibility: str, external_id: str, post_url: str | None) -> str | None:
    """The address of a public reply on its platform from the id its connector recorded, as the
    listeners build posts' addresses: a tweet's on X; a comment's under its post's permalink on Reddit
    and a post's on the forum of the post it answers on Discourse (None when there is no such post
    address). None for anything else, a private message included."""
    if visibility != "public":
        return None
    if platform == "x":
        return f"https://x.com/i/web/status/{external_id}" if _X_STATUS.fullmatch(external_id) else None
    url = urlsplit(post_url) if post_url and post_url.startswith(("https://", "http://")) else None
    if url is None or not url.hostname or "@" in url.netloc:
        return None
    if platform == "reddit":
        comment, post = _REDDIT_COMMENT.fullmatch(external_id), _REDDIT_POST.match(url.path)
        return f"{url.scheme}://{url.netloc}{post.group(0)}_/{comment.group(1)}/" if comment and post else None
    if platform == "discourse":
        found = _DISCOURSE_POST.fullmatch(external_id)
        forum = url.path.split("/t/", 1)[0] if "/t/" in url.path else None
        return f"{url.scheme}://{url.netloc}{forum}/t/-/{found.group(1)}/{found.group(2)}" \
            if found and forum is not None else None
    return None


@require(*AGENTS)
async def report(request: web.Request) -> web.Response:
    """Ask the moderators to review a post of this conversation (abuse, a threat, a doxxing): it
    joins the moderation queue as a hold with the agent's note. No claim needed: nothing is sent."""
    rt, p = request.app[RUNTIME], request[PRINCIPAL]
    conv_id = path_id(request)
    form = await form_of(request)
    note = clean_text(form.get("note"), limit=1000)
    mention_id = form_id(form, "mention_id")
    if not note:
        return await render_conversation(request, status=400, error="Say why the post needs a moderator.")
    async with rt.db.session() as session:
        await existing(session, conv_id)
        mention = await session.get(Mention, mention_id) if mention_id else None
        if mention is None or mention.conversation_id != conv_id:
            raise web.HTTPBadRequest(reason="mention_id is not part of this conversation")
        if not mention.is_public:
            raise web.HTTPBadRequest(reason="only public posts go to the moderators")
        if mention.deleted:  # a page read before the deletion: the moderators' queue no longer shows it
            why = gone_from_platform(mention)
            await session.rollback()
            return await render_conversation(request, status=409, error=f"Not reported: {why}.")
        await moderation.report(session, mention, p.actor, note)
        await session.commit()
    events.emit(request, "reported", [mention_id], conversation_id=conv_id, by=p.username)
    raise back(conv_id)


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
    raw = str((await form_of(request)).get("tags") or "")[:2000]
    try:
        tags = parse_tags(raw)
    except web.HTTPBadRequest as exc:  # shown on the conversation, with what was typed
        async with rt.db.session() as session:
            await existing(session, conv_id)
        return await render_conversation(request, status=400, error=exc.reason, tags=raw)
    async with rt.db.session() as session:
        conv = await existing(session, conv_id)
        conv.tags = tags
        record(session, p.actor, "conversation.tagged", "conversation", conv_id, tags=tags)
        await session.commit()
    events.emit(request, "tagged", [], conversation_id=conv_id, by=p.username)
    raise back(conv_id)
