"""Bot API actions on a mention: moderate it on its platform (hide, unhide, remove, approve, lock,
ban), escalate, resolve or tag it, or report it to the moderators — by the console's rules: escalate,
resolve and tag are the care team's, a live claim of another agent is respected unless taken over,
and a platform action is recorded once and performed like every other (:mod:`service.privacy_actions`)."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import Field
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from community import decisions, moderation
from console import events
from console.api.common import ApiError, Body, SafeStr, api, parse, path_id
from console.api.mentions import _mention
from console.auth import require
from console.claims import holder_name, try_claim
from console.conversation import parse_tags
from console.keys import PRINCIPAL, RUNTIME
from console.queue_data import CLAIM_TTL, claim_is_live
from console.replies import dispatch
from escalation.public_guard import gone_from_platform
from models import Author, Conversation, Mention, ModerationAction
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


class ActionIn(Body):
    action: Literal[ACTIONS]  # type: ignore[valid-type]
    reason: SafeStr = Field("", max_length=1_000, description=f"Required for {', '.join(NEEDS_REASON)}.")
    tags: list[SafeStr] = Field(default_factory=list, max_length=20, description="For tag: the tags to set.")
    take_over: bool = Field(False, description="escalate, resolve: act on a conversation another agent is "
                                               "working on (a live claim), taking it over; audited "
                                               "`conversation.taken_over`. Without it such a conversation is a 409.")



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


def routes() -> list[web.RouteDef]:
    return [web.post("/api/v1/mentions/{id:\\d+}/actions", post_action)]
