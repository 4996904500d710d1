"""Bot API for mentions: one mention with its triage, replies posted by bots, the queue (actions on a
mention: :mod:`console.api.actions`)."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from community.templates import TemplateRenderError, render
from console import events
from console.api import bot_limits
from console.api.common import (
    STORABLE,
    ApiError,
    Body,
    SafeStr,
    api,
    known_query,
    parse,
    path_id,
    query_choice,
    query_int,
)
from console.auth import require
from console.claims import holder_name
from console.keys import PRINCIPAL, RUNTIME
from console.knowledge import RESERVED_TEMPLATES
from console.queries import care_team_only, in_care_team, moderated_ids, public_text
from console.queue_data import QUEUE_LIMIT, claim_is_live, clean_filters, queue_items
from console.replies import dispatch
from escalation.links import shown_without_links
from escalation.public_guard import public_reply_refusal
from models import (
    Author,
    Conversation,
    KnowledgeArticle,
    Mention,
    Reply,
    RouteDecision,
    Template,
    TriageResult,
)
from models.base import utcnow
from service.audit import record

RESERVED_REPLY = ("template {name!r} is reserved: the service sends it on its own, with the case, link or "
                  "moderation action it announces; a bot may not post it")
IDEMPOTENCY_KEY = r"^[A-Za-z0-9_.:-]+$"
# constraints in the type itself, so that the JSON Schema (and the OpenAPI description) carries them
IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=IDEMPOTENCY_KEY),
                           STORABLE]


class ReplyIn(Body):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra={
        "description": "Give `text` or `template` (with an optional `tone`), exactly one of them.",
        "anyOf": [{"required": ["text"]}, {"required": ["template"]}], "minProperties": 1})

    text: SafeStr | None = Field(None, max_length=10_000, description="The reply; give text or template, not both.",
                                 json_schema_extra={"minLength": 1, "pattern": r"\S"})  # blank: _not_blank says so
    template: SafeStr | None = Field(None, min_length=1, max_length=100,
                                     description="A template's name (GET /api/v1/templates); give text or template, "
                                                 "not both. The service's reserved templates (" +
                                                 ", ".join(sorted(RESERVED_TEMPLATES)) + ") are refused (422).")
    tone: SafeStr | None = Field(None, min_length=1, max_length=40,
                                 description="With template: the variant (default: friendly, else the first).")
    visibility: Literal["public", "private"] = "public"
    idempotency_key: IdempotencyKey | None = Field(
        None, description="Repeating a request with the same key returns the first reply (200, created false), "
                          "whatever its status, except `failed` (it never reached the platform): then the key "
                          "is free again and the request is a new attempt (201), the failed reply kept. The "
                          "Idempotency-Key header does the same.")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:  # whitespace is stripped first
        if value is not None and not value:
            raise ValueError("text must not be empty")
        return value


def reply_json(r: Reply) -> dict[str, Any]:
    return {"id": r.id, "mention_id": r.mention_id, "conversation_id": r.conversation_id, "platform": r.platform,
            "visibility": r.visibility, "kind": r.kind, "text": shown_without_links(r.text), "template": r.template, "status": r.status,
            "error": shown_without_links(r.error) if r.error else None, "sent_by": r.sent_by,
            "created_at": r.created_at.isoformat(),
            "sent_at": r.sent_at.isoformat() if r.sent_at else None}


def triage_json(tri: TriageResult | None) -> dict[str, Any] | None:
    if tri is None:
        return None
    scores = tri.scores or {}
    explain = {task: {"label": getattr(tri, task), "score": (scores.get(task) or {}).get("score"),
                      "explanation": list((scores.get(task) or {}).get("explanation") or [])}
               for task in ("sentiment", "sensitivity", "issue_type", "toxicity", "spam")}
    return {"sentiment": tri.sentiment, "sensitivity": tri.sensitivity, "issue_type": tri.issue_type,
            "toxicity": tri.toxicity, "spam": tri.spam, "pii_exposed": tri.pii_exposed, "language": tri.language,
            "priority": tri.priority, "priority_explanation": list(scores.get("priority_explanation") or []),
            "model_version": tri.model_version, "scores": explain}


async def _mention(session: Any, mention_id: int, role: str | None = None) -> Mention:
    """The mention, or a 404; with the caller's ``role``, also a 404 for a private matter the role may
    not read (:func:`console.queries.in_care_team`), unless it is on the moderation page (a moderator
    acts on what the page shows)."""
    m = await session.get(Mention, mention_id)
    if m is None or (role is not None and await _withheld(session, m, role)):
        raise ApiError(404, "no such mention")
    return m


async def _withheld(session: Any, m: Mention, role: str) -> bool:
    if in_care_team(role):
        return False
    tri = await session.scalar(select(TriageResult).where(TriageResult.mention_id == m.id))
    d = await session.scalar(select(RouteDecision).where(RouteDecision.mention_id == m.id))
    return care_team_only(m, tri, d) and not (role == "moderator" and await moderated_ids(session, [m.id]))


@require("agent", "moderator", "marketing", scope="mentions:read")
@api
async def get_mention(request: web.Request) -> web.Response:
    """One mention with its triage (and explanations), routing decision and replies. A private
    matter is the care team's: 404 to anyone else (see :func:`_mention`), who also gets only the
    public replies."""
    rt, p = request.app[RUNTIME], request[PRINCIPAL]
    async with rt.db.session() as session:
        m = await _mention(session, path_id(request), p.role)
        tri = await session.scalar(select(TriageResult).where(TriageResult.mention_id == m.id))
        d = await session.scalar(select(RouteDecision).where(RouteDecision.mention_id == m.id))
        author = await session.get(Author, m.author_id) if m.author_id else None
        q = select(Reply).where(Reply.mention_id == m.id).order_by(Reply.id)
        if not in_care_team(p.role):
            q = q.where(Reply.visibility == "public")
        replies = list(await session.scalars(q))
    return web.json_response({
        "id": m.id, "platform": m.platform, "external_id": m.external_id, "url": m.url,
        "conversation_id": m.conversation_id, "author": author.handle if author else None,
        "created_at": m.created_at.isoformat(), "text": public_text(m, tri), "hidden": m.hidden,
        "deleted": m.deleted, "is_public": m.is_public, "triage": triage_json(tri),
        "route": None if d is None else {"outcome": d.outcome, "reason": d.reason, "confidence": d.confidence},
        "replies": [reply_json(r) for r in replies],
    })


async def _template_text(session: Any, name: str, tone: str | None, mention: Mention) -> str:
    tpl = await session.scalar(select(Template).where(Template.name == name))
    if tpl is None:
        raise ApiError(422, f"no template {name!r}")
    variants = tpl.variants or {}
    body = variants.get(tone) if tone else (variants.get("friendly") or next(iter(variants.values()), None))
    if body is None:
        raise ApiError(422, f"template {name!r} has no tone {tone!r}")
    author = await session.get(Author, mention.author_id) if mention.author_id else None
    article = await session.scalar(select(KnowledgeArticle).where(KnowledgeArticle.slug == tpl.article_slug)) \
        if tpl.article_slug else None
    link = article.url if article is not None else None  # as the bot's own answers and the console's
    try:
        return render(str(body), {"author_name": (author.display_name or author.handle) if author else "there",
                                  "article_url": link or ""}, platform=mention.platform, link=link)
    except TemplateRenderError as exc:
        raise ApiError(422, f"template {name!r} cannot render here: {str(exc)[:200]}") from None


def _free_failed_key(existing: Reply) -> None:
    """A reply that failed never reached the platform: its key is free for a new attempt (the failed
    row stays, under a key of its own; committed with the new reply, or not at all)."""
    existing.dedup_key = f"{existing.dedup_key}:failed:{existing.id}"[:200]


@require("agent", scope="replies:write")
@api
async def post_reply(request: web.Request) -> web.Response:
    """Queue a reply to a mention and send it (or record it in dry-run). Idempotent per key; the
    channel's bot policy applies (:mod:`console.api.bot_limits`)."""
    rt, p = request.app[RUNTIME], request[PRINCIPAL]
    body = await parse(request, ReplyIn)
    key = body.idempotency_key or request.headers.get("Idempotency-Key")
    if key is not None and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", key):
        raise ApiError(400, "Idempotency-Key: 1-100 characters of A-Z a-z 0-9 _ . : -")
    if (body.text is None) == (body.template is None):
        raise ApiError(422, "give either text or template")
    if body.template in RESERVED_TEMPLATES:
        raise ApiError(422, RESERVED_REPLY.format(name=body.template))
    async with rt.db.session() as session:
        mention = await _mention(session, path_id(request))
        dedup = f"api:{p.user_id}:{key}" if key else None
        if dedup:
            existing = await session.scalar(select(Reply).where(Reply.dedup_key == dedup))
            if existing is not None:
                if existing.mention_id != mention.id:
                    raise ApiError(409, "this idempotency key was used for another mention")
                if existing.status != "failed":
                    return web.json_response({"reply": reply_json(existing), "created": False})
                _free_failed_key(existing)
        policy = bot_limits.policy_for(rt.settings, mention.platform)
        bot_limits.refuse_if_disabled(policy, mention.platform)
        text = body.text if body.text is not None else await _template_text(session, body.template, body.tone, mention)
        if body.visibility == "public":
            refusal = await public_reply_refusal(session, mention, text)
            if refusal:  # bots never override: a person decides that a matter is not private
                raise ApiError(422, refusal.reason)
        conv = await session.get(Conversation, mention.conversation_id) if mention.conversation_id else None
        if conv is not None and claim_is_live(conv) and conv.claimed_by != p.user_id:
            raise ApiError(409, f"{await holder_name(session, conv.id)} is working on this conversation; "
                                "your reply was not sent")
        await bot_limits.check(session, rt, mention.platform, policy, utcnow())
        row = Reply(dedup_key=dedup or f"api:{p.user_id}:{uuid.uuid4().hex}", mention_id=mention.id,
                    conversation_id=mention.conversation_id, platform=mention.platform, visibility=body.visibility,
                    kind="bot_api", text=text, template=body.template,
                    status="dry_run" if policy.dry_run else "pending", sent_by=p.actor)
        session.add(row)
        record(session, p.actor, "reply.created", "mention", mention.id, visibility=body.visibility,
               template=body.template, **({"dry_run": True} if policy.dry_run else {}))
        try:
            await session.commit()
        except IntegrityError:
            raise ApiError(409, "a concurrent request used this idempotency key") from None
        reply_id, platform, mention_id = row.id, mention.platform, mention.id
    async with rt.db.session() as session:  # a concurrent bot reply may have been written meanwhile
        if await bot_limits.over_after_write(session, rt, platform, policy, utcnow()):
            await session.execute(delete(Reply).where(Reply.id == reply_id, Reply.status.in_(("pending", "dry_run"))))
            record(session, p.actor, "reply.withdrawn", "mention", mention_id, reason="bot limits")
            await session.commit()
            await bot_limits.check(session, rt, platform, policy, utcnow())
            raise bot_limits.too_many("the channel's bot limits are reached", None, utcnow())
    if not policy.dry_run:
        await dispatch(request, [reply_id])
    async with rt.db.session() as session:
        row = await session.get(Reply, reply_id)
    events.emit(request, "replied", [row.mention_id], conversation_id=row.conversation_id, by=p.username)
    return web.json_response({"reply": reply_json(row), "created": True}, status=201)


QUEUE_FILTERS = ("channel", "issue_type", "sentiment", "sensitivity")
QUEUE_MAX_OFFSET = 5_000


@require("agent", scope="mentions:read")
@api
async def get_queue(request: web.Request) -> web.Response:
    """The agent queue as JSON, in the order agents see it, a page at a time: ``has_more`` says
    whether the queue goes on past this page (it used to stop at 300 without a word)."""
    from triage.protocol import SENSITIVITY_LABELS, SENTIMENT_LABELS

    rt = request.app[RUNTIME]
    known_query(request, *QUEUE_FILTERS, "limit", "offset")
    query_choice(request, "sentiment", SENTIMENT_LABELS)
    query_choice(request, "sensitivity", SENSITIVITY_LABELS)
    limit = query_int(request, "limit", QUEUE_LIMIT, 1, 500)
    offset = query_int(request, "offset", 0, 0, QUEUE_MAX_OFFSET)
    async with rt.db.session() as session:
        items = await queue_items(session, clean_filters(request.query), limit=offset + limit + 1)
    page = items[offset:offset + limit]
    return web.json_response({"items": [i.to_dict() for i in page], "limit": limit, "offset": offset,
                              "has_more": len(items) > offset + limit})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/mentions/{id:\\d+}", get_mention),
        web.post("/api/v1/mentions/{id:\\d+}/replies", post_reply),
        web.get("/api/v1/queue", get_queue),
    ]
