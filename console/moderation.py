"""The moderation queue: held and reported posts with their rule (or who reported them), scores and
author; approve, remove (with a reason the author receives), ban or escalate — carried out on the
platform through the connector. Moderators can also take back a bot reply (``delete_reply``).
Posts are shown in their redacted public form: personal data never reaches this page."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from community import moderation
from community.replybot import revert_reply
from console.auth import Principal, require
from console.keys import PRINCIPAL, RUNTIME
from console.queries import public_text
from console.render import render
from models import Mention, ModerationAction, Reply
from service.dispatch import Dispatcher

RECENT = 100


def _connectors(request: web.Request) -> dict:
    return {c.platform: c for c in request.app[RUNTIME].connectors}


@require("moderator")
async def queue_page(request: web.Request) -> web.Response:
    async with request.app[RUNTIME].db.session() as session:
        items = [(hold, m, author, tri, public_text(m, tri), _reporter(hold))
                 for hold, m, author, tri in await moderation.queue(session)]
        recent = (await session.execute(
            select(ModerationAction, Mention).join(Mention, Mention.id == ModerationAction.mention_id)
            .where(ModerationAction.status != "pending").order_by(ModerationAction.id.desc()).limit(RECENT))).all()
        alerts = await moderation.alerts(session)
        bot_replies = list(await session.scalars(
            select(Reply).where(Reply.sent_by == "bot", Reply.visibility == "public",
                                Reply.status.in_(("sent", "dry_run", "unknown")))
            .order_by(Reply.id.desc()).limit(RECENT)))
    done, failed = request.query.get("done"), request.query.get("failed")
    return render(request, "moderation.html", items=items, recent=recent, bot_replies=bot_replies, alerts=alerts,
                  decisions=moderation.REVIEW_DECISIONS,
                  outcome={"done": done, "failed": failed} if done and done.isdigit() else None)


def _reporter(hold: ModerationAction) -> str | None:
    """Who reported the post ("alice", "alice's bot"), or None for a hold a rule made."""
    if hold.rule != moderation.REPORT_RULE:
        return None
    via, _, name = hold.actor.partition(":")
    return f"{name}'s bot" if via == "token" else name or hold.actor


async def _carry_out(request: web.Request, hold_ids: list[int], decision: str, reason: str) -> list[str]:
    """Review each held post in its own transaction (one bad item does not undo the others), then
    perform the platform actions and send the notices. Returns one error line per refused item."""
    p: Principal = request[PRINCIPAL]
    rt = request.app[RUNTIME]
    actions: list[int] = []
    replies: list[int] = []
    errors: list[str] = []
    for hold_id in hold_ids:
        async with rt.db.session() as session:
            hold = await session.get(ModerationAction, hold_id)
            if hold is None or hold.action != "hold":
                errors.append(f"#{hold_id}: no such held post")
                continue
            try:
                out = await moderation.review(session, hold, decision, p.actor, reason=reason, settings=rt.settings)
            except ValueError as exc:
                errors.append(f"#{hold_id}: {exc}")
                continue
            await session.commit()
        actions += out["actions"]
        replies += out["replies"]
    await moderation.execute(rt.db, _connectors(request), actions, dry_run=rt.settings.dry_run,
                             dry_run_channels=set(rt.settings.bot_dry_run_channels))
    await Dispatcher.for_settings(rt.db, rt.connectors, rt.settings).deliver(replies)
    return errors


@require("moderator")
async def review(request: web.Request) -> web.Response:
    form = await request.post()
    errors = await _carry_out(request, [int(request.match_info["action_id"])], str(form.get("decision") or ""),
                              str(form.get("reason") or ""))
    if errors and "no such held post" in errors[0]:
        raise web.HTTPNotFound()
    if errors:
        raise web.HTTPBadRequest(reason=errors[0].split(": ", 1)[1])
    raise web.HTTPSeeOther("/moderation")


@require("moderator")
async def review_bulk(request: web.Request) -> web.Response:
    """The same decision (and reason) for every selected post: the spam wave is cleared at once."""
    form = await request.post()
    try:
        ids = list(dict.fromkeys(int(v) for v in form.getall("ids", [])))
    except ValueError as exc:
        raise web.HTTPBadRequest(reason="ids must be numbers") from exc
    if not ids:
        raise web.HTTPBadRequest(reason="select at least one post")
    if len(ids) > moderation.BULK_LIMIT:
        raise web.HTTPBadRequest(reason=f"at most {moderation.BULK_LIMIT} posts at once")
    decision = str(form.get("decision") or "")
    if decision not in moderation.REVIEW_DECISIONS:
        raise web.HTTPBadRequest(reason=f"decision must be one of {', '.join(moderation.REVIEW_DECISIONS)}")
    errors = await _carry_out(request, ids, decision, str(form.get("reason") or ""))
    if errors and len(errors) == len(ids):
        raise web.HTTPBadRequest(reason="; ".join(errors)[:500])
    raise web.HTTPSeeOther(f"/moderation?done={len(ids) - len(errors)}&failed={len(errors)}")


@require("moderator")
async def acknowledge_alert(request: web.Request) -> web.Response:
    """A moderator takes a ``notify`` alert in hand (recorded with who)."""
    p: Principal = request[PRINCIPAL]
    async with request.app[RUNTIME].db.session() as session:
        alert = await session.get(ModerationAction, int(request.match_info["action_id"]))
        if alert is None or alert.action != "notify":
            raise web.HTTPNotFound()
        if not await moderation.acknowledge(session, alert, p.actor):
            raise web.HTTPBadRequest(reason="this alert was already acknowledged")
        await session.commit()
    raise web.HTTPSeeOther("/moderation")


@require("moderator")
async def delete_bot_reply(request: web.Request) -> web.Response:
    p: Principal = request[PRINCIPAL]
    form = await request.post()
    reason = str(form.get("reason") or "").strip()
    if not reason:
        raise web.HTTPBadRequest(reason="say why the reply is taken back")
    async with request.app[RUNTIME].db.session() as session:
        reply = await session.get(Reply, int(request.match_info["reply_id"]))
        if reply is None or reply.sent_by != "bot":
            raise web.HTTPNotFound()
        result = await revert_reply(session, reply, _connectors(request), p.actor, reason[:500])
        await session.commit()
    if not result.ok:
        raise web.HTTPBadGateway(reason=f"the platform refused: {result.error}")
    raise web.HTTPSeeOther("/moderation")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/moderation", queue_page),
        web.post(r"/moderation/{action_id:\d+}/review", review),
        web.post("/moderation/bulk", review_bulk),
        web.post(r"/moderation/alerts/{action_id:\d+}/acknowledge", acknowledge_alert),
        web.post(r"/moderation/replies/{reply_id:\d+}/delete", delete_bot_reply),
    ]
