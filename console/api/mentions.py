"""Bot API for mentions: one mention with its triage, replies posted by bots, actions, the queue."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from community import decisions, moderation
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
from console.claims import holder_name, try_claim
from console.conversation import parse_tags
from console.keys import PRINCIPAL, RUNTIME
from console.knowledge import RESERVED_TEMPLATES
from console.queries import care_team_only, in_care_team, moderated_ids, public_text
from console.queue_data import CLAIM_TTL, QUEUE_LIMIT, claim_is_live, clean_filters, queue_items
from console.replies import dispatch
from escalation.links import shown_without_links
from escalation.public_guard import gone_from_platform, public_reply_refusal
from models import (
    Author,
    Conversation,
    KnowledgeArticle,
    Mention,
    ModerationAction,
    Reply,
    RouteDecision,
    Template,
    TriageResult,
)
from models.base import utcnow
from service.audit import record
from service.privacy import CANCELLED, erased
from service.privacy_actions import cancel_actions, perform_actions

ACTIONS = ("hide", "unhide", "remove", "approve", "lock", "ban", "escalate", "resolve", "tag", "report")
SETTLES_HOLD = {"approve": "approve", "unhide": "approve", "remove": "remove", "ban": "ban"}  # a pending hold's decision
ON_THE_POST = ("hide", "unhide", "remove", "approve", "lock")  # refused once it is deleted on its platform (409)
NEEDS_REASON = ("remove", "ban", "report")  # the reason goes to the author (remove, ban) or the moderators
ERASED_MESSAGE = "this post was erased on a privacy request: nothing was done on the platform"
TAKES_CLAIM = ("escalate", "resolve")  # refused on a conversation another agent holds, unless take_over
MODERATOR_REFUSAL = "{action} is the care team's work: a moderator's token may not do it"
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


class ActionIn(Body):
    action: Literal[ACTIONS]  # type: ignore[valid-type]
    reason: SafeStr = Field("", max_length=1_000, description=f"Required for {', '.join(NEEDS_REASON)}.")
    tags: list[SafeStr] = Field(default_factory=list, max_length=20, description="For tag: the tags to set.")
    take_over: bool = Field(False, description="escalate, resolve: act on a conversation another agent is "
                                               "working on (a live claim), taking it over; audited "
                                               "`conversation.taken_over`. Without it such a conversation is a 409.")


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


async def _held_for_moderators(session: Any, mention: Mention) -> bool:
    """Is the post in the moderators' queue (a hold waiting), or did they escalate it from there
    already (a repeat answers with the same case)?"""
    holds = await session.scalars(select(ModerationAction).where(ModerationAction.mention_id == mention.id,
                                                                 ModerationAction.action == "hold"))
    return any(h.status == "pending" or (h.details or {}).get("decision") == "escalate" for h in holds)


async def _respect_claim(session: Any, conv: Conversation | None, p: Any, take_over: bool) -> str | None:
    """As the console: a conversation another agent holds (a live claim) is theirs, a 409, unless the
    caller takes it over (``take_over``); returns the holder's name when taken over."""
    if conv is None or not claim_is_live(conv) or conv.claimed_by == p.user_id:
        return None
    holder = await holder_name(session, conv.id)
    if not take_over:
        raise ApiError(409, f"{holder} is working on this conversation: nothing was done; send take_over: true "
                            "to take it over")
    return holder


async def _resolve(session: Any, conv: Conversation, p: Any, take_over: bool) -> None:
    """Resolve as :func:`console.claims.resolve_unless_held` does: one conditional UPDATE, refused
    (409) when another agent's live claim won meanwhile; a take-over is audited."""
    holder = await _respect_claim(session, conv, p, take_over)
    if conv.status == "resolved":
        return
    stmt = update(Conversation).where(Conversation.id == conv.id, Conversation.status != "resolved")
    if not take_over:
        stmt = stmt.where(or_(Conversation.claimed_by.is_(None), Conversation.claimed_by == p.user_id,
                              Conversation.claimed_at.is_(None), Conversation.claimed_at < utcnow() - CLAIM_TTL))
    result = await session.execute(stmt.values(status="resolved", claimed_by=None, claimed_at=None)
                                   .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        await session.refresh(conv)
        if conv.status == "resolved":
            return
        raise ApiError(409, f"{await holder_name(session, conv.id)} is working on this conversation: nothing "
                            "was done; send take_over: true to take it over")
    if holder:
        record(session, p.actor, "conversation.taken_over", "conversation", conv.id, from_user=holder)
    record(session, p.actor, "conversation.resolved", "conversation", conv.id)


@require("agent", "moderator", scope="actions:write")
@api
async def post_action(request: web.Request) -> web.Response:
    """Moderate (hide, unhide, remove, approve, lock, ban), escalate, resolve or tag a mention, or
    report it to the moderators (a hold in their queue; ``reason`` is the note they read). Escalate,
    resolve and tag are the care team's work, as in the console: a moderator's token escalates only
    a post held in the moderation queue (the queue's decision), never resolves or tags. Escalate and
    resolve respect another agent's claim (409) unless ``take_over``."""
    rt, p = request.app[RUNTIME], request[PRINCIPAL]
    body = await parse(request, ActionIn)
    if body.action in NEEDS_REASON and not body.reason:
        raise ApiError(422, f"{body.action} needs a reason")
    if body.take_over and body.action not in TAKES_CLAIM:
        raise ApiError(422, f"take_over is for {' and '.join(TAKES_CLAIM)}")
    moderator = p.role == "moderator"
    if moderator and body.action in ("resolve", "tag"):
        raise ApiError(403, MODERATOR_REFUSAL.format(action=body.action))
    try:
        async with rt.db.session() as session:
            mention = await _mention(session, path_id(request), p.role)
            result: dict[str, Any] = {"action": body.action, "mention_id": mention.id}
            if body.action in ("hide", "unhide", "remove", "approve", "lock", "ban"):
                result.update(await _moderate(request, session, mention, body))
                if result["status"] == CANCELLED:  # erased meanwhile: audited by id only, nothing said of it
                    await session.commit()
                    raise ApiError(410, ERASED_MESSAGE)
            elif body.action == "escalate":
                from escalation.handoff import escalate_mention

                conv = await session.get(Conversation, mention.conversation_id) if mention.conversation_id else None
                if moderator:  # the moderation queue's decision on a held post, as on /moderation
                    if not await _held_for_moderators(session, mention):
                        raise ApiError(403, MODERATOR_REFUSAL.format(action="escalate")
                                       + " (a post held in the moderation queue may be escalated)")
                    holds = await decisions.pending_holds(session, mention.id)
                elif holder := await _respect_claim(session, conv, p, body.take_over):
                    await try_claim(session, conv.id, p.user_id, force=True)
                    record(session, p.actor, "conversation.taken_over", "conversation", conv.id, from_user=holder)
                case, added = await escalate_mention(session, mention, rt.settings, p.actor, category="agent")
                if moderator:
                    for hold in holds:
                        decisions.mark_reviewed(hold, "escalate", p.actor)
                        record(session, p.actor, "moderation.review.escalate", "moderation_action", hold.id,
                               rule=hold.rule, mention_id=mention.id)
                result.update(case_id=case.id, replies=[r.id for r in added])
            elif body.action == "report":
                if not mention.is_public:
                    raise ApiError(422, "only public posts go to the moderators")
                if erased(mention):
                    raise ApiError(410, ERASED_MESSAGE)
                if mention.deleted:
                    raise ApiError(409, gone_from_platform(mention))
                hold, created = await moderation.report(session, mention, p.actor, body.reason)
                result.update(moderation_action_id=hold.id, status=hold.status, repeated=not created)
            elif body.action in ("resolve", "tag"):
                conv = await session.get(Conversation, mention.conversation_id) if mention.conversation_id else None
                if conv is None:
                    raise ApiError(409, "this mention has no conversation")
                if body.action == "resolve":
                    await _resolve(session, conv, p, body.take_over)
                else:
                    try:
                        conv.tags = parse_tags(",".join(body.tags))
                    except web.HTTPBadRequest as exc:
                        raise ApiError(422, exc.reason) from None
                    result["tags"] = conv.tags
                result["conversation_id"] = conv.id
            record(session, p.actor, f"mention.{body.action}", "mention", mention.id, reason=body.reason or None)
            await session.commit()
    except IntegrityError:  # the same action by a concurrent request won a unique key or the one open case
        raise ApiError(409, f"a concurrent request is already doing {body.action} on this mention; "
                            "repeat the request to see its result") from None
    if body.action == "escalate":
        await dispatch(request, result.get("replies", []))
    events.emit(request, body.action, [mention.id], conversation_id=result.get("conversation_id"), by=p.username)
    return web.json_response(result)


def as_asked(platform: str, action: str) -> str:
    """The connector is asked for the API's own action (``remove`` deletes a Discourse post)."""
    return action


async def _moderate(request: web.Request, session: Any, mention: Mention, body: ActionIn) -> dict[str, Any]:
    """Record the action (once per mention and action) and carry it out on the platform unless
    the service runs in dry-run mode or no connector serves the platform. The row is committed
    ``queued`` first and performed like every platform action (:mod:`service.privacy_actions`): at
    most once, and ``cancelled`` if the post is erased meanwhile (status ``cancelled``, a 410)."""
    rt, p = request.app[RUNTIME], request[PRINCIPAL]
    if erased(mention):
        raise ApiError(410, ERASED_MESSAGE)
    if mention.deleted and body.action in ON_THE_POST:
        raise ApiError(409, gone_from_platform(mention))
    if body.action in ("unhide", "approve") and await decisions.exposes_personal_data(session, mention):
        raise ApiError(409, decisions.EXPOSED)
    # Once per mention and action *since the last other action on it*: a retried "hide" is a repeat,
    # but "hide" after an "unhide" hides the post again.
    since = await session.scalar(select(func.count()).select_from(ModerationAction).where(
        ModerationAction.mention_id == mention.id, ModerationAction.action != body.action))
    key = f"api:{body.action}:{mention.id}:{since}"
    done = await session.scalar(select(ModerationAction).where(ModerationAction.dedup_key == key))
    if done is not None:
        return {"status": done.status, "moderation_action_id": done.id, "repeated": True}
    connector = {c.platform: c for c in rt.connectors}.get(mention.platform)
    dry = rt.settings.dry_run or connector is None
    row = ModerationAction(dedup_key=key, mention_id=mention.id, action=body.action, rule="api",
                           reason=body.reason, actor=p.actor, status="queued", details={"dry_run": True} if dry else {})
    session.add(row)
    await session.flush()
    if dry:  # recorded as done; cancelled instead if the post was erased since it was read
        if await cancel_actions(session, [row.id]):
            return {"status": CANCELLED}
        row.status = "done"
    else:  # a concurrent twin fails this commit (IntegrityError: 409) and performs nothing
        await session.commit()
        await perform_actions(rt.db, {mention.platform: connector}, [row.id], dry_run=False, kind_of=as_asked)
        await session.refresh(row)
        if row.status == CANCELLED:
            return {"status": CANCELLED}
    if row.status == "done":
        await record_effect(session, mention, body.action, p.actor)
    details = {k: v for k, v in (row.details or {}).items() if k in ("dry_run", "error")}
    return {"status": row.status, "moderation_action_id": row.id, "repeated": False, **details}


async def record_effect(session: Any, mention: Mention, action: str, actor: str) -> None:
    """What a done action of the API changes here (also once a person settles an interrupted one as
    done: :mod:`console.settle`): the post hidden or shown, its author banned, and a hold a moderator
    was asked to decide decided by it (``actor``: who decided)."""
    if action in ("hide", "remove"):
        mention.hidden = True
    elif action in ("unhide", "approve"):
        mention.hidden = False
    elif action == "ban" and mention.author_id:
        author = await session.get(Author, mention.author_id)
        if author is not None:
            author.banned = True
    if action in SETTLES_HOLD:  # the bot decided what a moderator was asked to: the hold is done
        for hold in await decisions.pending_holds(session, mention.id):
            decisions.mark_reviewed(hold, SETTLES_HOLD[action], actor)


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
        web.post("/api/v1/mentions/{id:\\d+}/actions", post_action),
        web.get("/api/v1/queue", get_queue),
    ]
