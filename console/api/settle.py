"""Bot API: settling a reply or a moderation action left ``unknown`` (its sender was interrupted mid
platform call, :mod:`service.stranded`) once someone looked on the platform: the same operations
as the console's forms (:mod:`console.settle`), for the roles that may send a reply or act on a post.
A row no longer ``unknown`` (the platform answered after all, or it was settled already) is a 409
naming its status now (``current_status``); nothing is changed twice."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from console import settle
from console.api.common import ApiError, Body, SafeStr, api, parse, path_id
from console.api.mentions import reply_json
from console.auth import require
from console.keys import PRINCIPAL, RUNTIME
from console.moderation_view import shown_action
from console.posted_ids import MAX_PASTED
from console.queries import in_care_team
from models import ModerationAction, Reply


class ReplySettleIn(Body):
    outcome: Literal[settle.REPLY_OUTCOMES] = Field(  # type: ignore[valid-type]
        description="`posted`: it is on the platform (the reply becomes `sent`); `not_posted`: it is not, "
                    "send it again (as a new reply is sent, after the same public-reply checks)")
    platform_ref: SafeStr | None = Field(
        None, min_length=1, max_length=MAX_PASTED,
        description="With `posted`, optional: the reply's id on its platform or its address (a tweet id or "
                    "x.com/<name>/status/<id>; a Reddit comment's t1_ id or permalink; a Discourse "
                    "<topic>/<number> or /t/<slug>/<topic>/<number>), kept so that the reply can be deleted there")


class ActionSettleIn(Body):
    outcome: Literal[settle.ACTION_OUTCOMES] = Field(  # type: ignore[valid-type]
        description="`happened`: it is done on the platform (`done`); `not_happened`: try it again (`queued`, "
                    "its interruption count reset to 0; an action of this API is performed at once, the others "
                    "by the service within seconds)")


def action_json(a: ModerationAction) -> dict[str, Any]:
    return {"id": a.id, "mention_id": a.mention_id, "action": a.action, "rule": a.rule, "actor": a.actor,
            "status": a.status, "created_at": a.created_at.isoformat(),
            "interrupted": int((a.details or {}).get("interrupted") or 0)}


def _refused(exc: settle.Refused) -> ApiError:
    return ApiError(exc.status, exc.message, **({"current_status": exc.current} if exc.current else {}))


@require("agent", scope="replies:write")
@api
async def settle_reply(request: web.Request) -> web.Response:
    """Settle a reply left ``unknown``: it was posted (``sent``), or it was not (sent again)."""
    reply_id = path_id(request)
    body = await parse(request, ReplySettleIn)
    if body.outcome != "posted" and body.platform_ref is not None:
        raise ApiError(422, "platform_ref goes with outcome posted only")
    try:
        if body.outcome == "posted":
            done = await settle.reply_posted(request, reply_id, body.platform_ref)
        else:  # a bot never overrules the public guard, nor sends on a channel whose bots are switched off
            from console.api import bot_limits

            async with request.app[RUNTIME].db.session() as session:
                row = await session.get(Reply, reply_id)
            if row is not None and row.status == "unknown":
                bot_limits.refuse_if_disabled(bot_limits.policy_for(request.app[RUNTIME].settings, row.platform),
                                              row.platform)
            done = await settle.reply_again(request, reply_id)
    except settle.Refused as exc:
        raise _refused(exc) from None
    async with request.app[RUNTIME].db.session() as session:
        row = await session.get(Reply, reply_id)
    return web.json_response({"reply": reply_json(row), "message": done.message})


@require("agent", "moderator", scope="actions:write")
@api
async def settle_action(request: web.Request) -> web.Response:
    """Settle a moderation action left ``unknown``: it happened (``done``), or try it again."""
    action_id = path_id(request)
    body = await parse(request, ActionSettleIn)
    async with request.app[RUNTIME].db.session() as session:  # a moderator's token: not on a private matter
        if await shown_action(session, action_id, private=in_care_team(request[PRINCIPAL].role)) is None:
            raise ApiError(404, "no such moderation action")
    try:
        if body.outcome == "happened":
            done = await settle.action_happened(request, action_id)
        else:
            done = await settle.action_again(request, action_id)
    except settle.Refused as exc:
        raise _refused(exc) from None
    async with request.app[RUNTIME].db.session() as session:
        row = await session.get(ModerationAction, action_id)
    return web.json_response({"moderation_action": action_json(row), "message": done.message})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/replies/{id:\\d+}/settle", settle_reply),
        web.post("/api/v1/moderation-actions/{id:\\d+}/settle", settle_action),
    ]
