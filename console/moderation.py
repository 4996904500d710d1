"""The moderation queue: held and reported posts with their rule (or who reported them), scores and
author; approve, remove (with a reason the author receives), ban or escalate — carried out on the
platform through the connector. Moderators can also take back a bot reply (``delete_reply``), and
settle an action its executor left ``unknown`` (interrupted mid-call): it happened, or try it again
(:mod:`console.settle`).
Posts are shown in their redacted public form: personal data never reaches this page.

Every change answers on the page itself: a done change redirects back with a short confirmation
naming the post (console.flash, read once); a refused one renders the page with the message and
what the moderator had selected and typed, so nothing is lost and no bare error page is shown.
A post erased on a privacy request, before or while a decision is carried out, is such a refusal
(410 for a single decision): its actions end ``cancelled``, never sent (:mod:`service.privacy_actions`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from community import decisions, moderation
from community.replybot import revert_reply
from console import flash, settle
from console import moderation_view as view
from console.auth import Principal, require
from console.keys import PRINCIPAL, RUNTIME
from console.paths import parse_id, path_id
from console.queries import in_care_team
from console.render import render
from escalation.public_guard import platform_name
from models import Mention, ModerationAction
from models.mentions import ERASED_TEXT
from service.dispatch import Dispatcher
from service.privacy import ERASED_IDS, erased
from service.privacy_actions import perform_actions

NAMED = 10  # refused posts named one by one in a bulk outcome; the rest are counted
ERASED_WHY = "the post was erased on a privacy request: nothing was done on the platform"
DONE = {"approve": "approved", "remove": "removed", "ban": "removed and its author banned",
        "escalate": "escalated to a private case"}


@dataclass
class Kept:
    """What a refused form had selected and typed, shown again with the message."""

    ids: set[int] = field(default_factory=set)
    decision: str = ""
    reason: str = ""
    hold_id: int | None = None  # a single decision's post


@dataclass
class Refusal:
    hold_id: int
    post: str  # a redacted snippet
    why: str


def _connectors(request: web.Request) -> dict:
    return {c.platform: c for c in request.app[RUNTIME].connectors}


@require("moderator")
async def queue_page(request: web.Request) -> web.Response:
    carried = flash.take(request)
    response = await render_moderation(request, notice=carried.get("notice"))
    flash.forget(request, response)
    return response


async def render_moderation(request: web.Request, *, notice: str | None = None, error: str | None = None,
                            status: int = 200, kept: Kept | None = None) -> web.Response:
    """The page, with a done change's ``notice`` or a refusal's ``error`` (and what it ``kept``)."""
    role = request[PRINCIPAL].role
    private = in_care_team(role)  # a moderator's page leaves the care team's private matters out
    async with request.app[RUNTIME].db.session() as session:
        items = await view.held_posts(session)
        recent = await view.recent_actions(session, private=private)
        alerts = await view.open_alerts(session)
        acknowledged = await view.acknowledged(session)
        bot_replies = await view.bot_replies(session, private=private)
        unknown_actions = await view.unknown_actions(session, private=private)
        # every other row is a moderation action, whose thread a moderator opens; a bot reply's may not be
        openable = await view.openable(session, role, {b.reply.conversation_id for b in bot_replies})
    return render(request, "moderation.html", status=status, items=items, recent=recent, bot_replies=bot_replies,
                  unknown_actions=unknown_actions, alerts=alerts, acknowledged=acknowledged, openable=openable,
                  decisions=decisions.REVIEW_DECISIONS, notice=notice, error=error, kept=kept or Kept(),
                  platform_name=platform_name)


def back_to_moderation(request: web.Request, notice: str) -> web.StreamResponse:
    """Back to the page, which shows ``notice`` once."""
    return flash.redirect(request, "/moderation", notice=notice) or web.HTTPSeeOther("/moderation")


async def _carry_out(request: web.Request, hold_ids: list[int], decision: str,
                     reason: str) -> tuple[list[str], list[Refusal]]:
    """Review each held post in its own transaction (one bad item does not undo the others), then
    perform the platform actions and send the notices, both refused for a post erased meanwhile
    (:mod:`service.privacy_actions`). Returns the snippets of the posts decided and the refusals."""
    p: Principal = request[PRINCIPAL]
    rt = request.app[RUNTIME]
    actions: list[int] = []
    replies: list[int] = []
    decided: list[tuple[int, int, str]] = []  # hold, post, snippet
    refused: list[Refusal] = []
    for hold_id in hold_ids:
        async with rt.db.session() as session:
            hold = await session.get(ModerationAction, hold_id)
            if hold is None or hold.action != "hold":
                refused.append(Refusal(hold_id, f"#{hold_id}", "no such held post"))
                continue
            mention = await session.get(Mention, hold.mention_id)
            if mention is not None and erased(mention):
                refused.append(Refusal(hold_id, ERASED_TEXT, ERASED_WHY))
                continue
            post = await view.post_snippet(session, hold.mention_id)
            try:
                out = await decisions.review(session, hold, decision, p.actor, reason=reason, settings=rt.settings)
            except ValueError as exc:
                refused.append(Refusal(hold_id, post, str(exc)))
                continue
            await session.commit()
        decided.append((hold_id, hold.mention_id, post))
        actions += out["actions"]
        replies += out["replies"]
    await perform_actions(rt.db, _connectors(request), actions, dry_run=rt.settings.dry_run,
                          dry_run_channels=set(rt.settings.bot_dry_run_channels))
    await Dispatcher.for_settings(rt.db, rt.connectors, rt.settings).deliver(replies)
    async with rt.db.session() as session:  # erased while the decision was carried out: its words are gone
        gone = set(await session.scalars(ERASED_IDS, {"ids": [m for _, m, _ in decided]})) if decided else set()
    refused += [Refusal(h, ERASED_TEXT, ERASED_WHY) for h, m, _ in decided if m in gone]
    return [post for _, m, post in decided if m not in gone], refused


def _form_error(decision: str, reason: str) -> str | None:
    """What the form itself lacks, checked before any post is touched."""
    if decision not in decisions.REVIEW_DECISIONS:
        return f"choose a decision: {', '.join(decisions.REVIEW_DECISIONS)}"
    if decision in ("remove", "ban") and not reason.strip():
        return f"{'banning' if decision == 'ban' else 'removing a post'} needs a reason for its author"
    return None


def _refusals(refused: list[Refusal]) -> str:
    """"«snippet» (why); …" — the posts by what they say, not by an id nobody sees."""
    named = "; ".join(f"«{r.post}» ({r.why})" for r in refused[:NAMED])
    return named + (f"; and {len(refused) - NAMED} more" if len(refused) > NAMED else "")


@require("moderator")
async def review(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    hold_id = path_id(request, "action_id")
    decision, reason = str(form.get("decision") or ""), str(form.get("reason") or "")
    kept = Kept(decision=decision, reason=reason, hold_id=hold_id)
    if error := _form_error(decision, reason):
        return await render_moderation(request, error=error, status=400, kept=kept)
    done, refused = await _carry_out(request, [hold_id], decision, reason)
    if refused and refused[0].why == "no such held post":
        raise web.HTTPNotFound()
    if refused:
        return await render_moderation(request, error=f"«{refused[0].post}»: {refused[0].why}", kept=kept,
                           status=410 if refused[0].why == ERASED_WHY else 400)
    return back_to_moderation(request, f"«{done[0]}» {DONE[decision]}.")


@require("moderator")
async def review_bulk(request: web.Request) -> web.StreamResponse:
    """The same decision (and reason) for every selected post: the spam wave is cleared at once."""
    form = await request.post()
    decision, reason = str(form.get("decision") or ""), str(form.get("reason") or "")
    kept = Kept(decision=decision, reason=reason)
    parsed = [parse_id(str(v)) for v in form.getall("ids", [])]  # ASCII digits within range, else None
    if None in parsed:
        return await render_moderation(request, error="ids must be numbers", status=400, kept=kept)
    ids = list(dict.fromkeys(v for v in parsed if v is not None))
    kept.ids = set(ids)
    error = _form_error(decision, reason)
    if not ids:
        error = "select at least one post"
    elif len(ids) > moderation.BULK_LIMIT:
        error = f"at most {moderation.BULK_LIMIT} posts at once"
    if error:
        return await render_moderation(request, error=error, status=400, kept=kept)
    done, refused = await _carry_out(request, ids, decision, reason)
    if not done:
        kept.ids = {r.hold_id for r in refused}
        return await render_moderation(request, error=f"nothing {DONE[decision]}: {_refusals(refused)}", status=400, kept=kept)
    notice = f"{len(done)} reviewed ({DONE[decision]})"
    return back_to_moderation(request, notice + (f"; {len(refused)} refused: {_refusals(refused)}." if refused else "."))


@require("moderator")
async def acknowledge_alert(request: web.Request) -> web.StreamResponse:
    """A moderator takes a ``notify`` alert in hand (recorded with who)."""
    p: Principal = request[PRINCIPAL]
    async with request.app[RUNTIME].db.session() as session:
        alert = await session.get(ModerationAction, path_id(request, "action_id"))
        if alert is None or alert.action != "notify":
            raise web.HTTPNotFound()
        post = await view.post_snippet(session, alert.mention_id)
        taken = await moderation.acknowledge(session, alert, p.actor)
        await session.commit()
    if not taken:
        return await render_moderation(request, error=f"the alert on «{post}» was already acknowledged", status=400)
    return back_to_moderation(request, f"Alert on «{post}» acknowledged.")


@require("moderator")
async def delete_bot_reply(request: web.Request) -> web.StreamResponse:
    """Take back one of the bot replies the page lists (public, gone out or maybe): any other reply,
    a private message with a secure link above all, is a 404. Its text is quoted masked."""
    p: Principal = request[PRINCIPAL]
    form = await request.post()
    reason = str(form.get("reason") or "").strip()
    async with request.app[RUNTIME].db.session() as session:
        reply = await view.bot_reply(session, path_id(request, "reply_id"), private=in_care_team(p.role))
        if reply is None:
            raise web.HTTPNotFound()
        text = view.reply_text(reply, 60)
        unsure = reply.status == "unknown" and not reply.external_ids  # posted or not, with no id to delete it by
        if reason:
            result = await revert_reply(session, reply, _connectors(request), p.actor, reason[:500])
            await session.commit()
    if not reason:
        return await render_moderation(request, error=f"say why the reply «{text}» is taken back", status=400)
    if not result.ok:
        return await render_moderation(request, error=f"the platform refused to delete «{text}»: {result.error}", status=502)
    if unsure:
        return back_to_moderation(request, f"Reply «{text}» taken back here. It may still be on "
                                           f"{platform_name(reply.platform)}, where it cannot be deleted without its "
                                           "id: check there.")
    return back_to_moderation(request, f"Reply «{text}» taken back.")


@require("moderator")
async def settle_action(request: web.Request) -> web.StreamResponse:
    """A moderator checked an interrupted action (``unknown``) on its platform: ``outcome`` happened
    (done) or not_happened (tried again): :mod:`console.settle`."""
    action_id = path_id(request, "action_id")
    outcome = str((await request.post()).get("outcome") or "")
    async with request.app[RUNTIME].db.session() as session:
        row = await view.shown_action(session, action_id, private=in_care_team(request[PRINCIPAL].role))
        if row is None:
            raise web.HTTPNotFound()
        post = await view.post_snippet(session, row.mention_id)
    try:
        if outcome == "happened":
            done = await settle.action_happened(request, action_id)
        elif outcome == "not_happened":
            done = await settle.action_again(request, action_id)
        else:
            raise settle.Refused(400, "say whether it happened on the platform")
    except settle.Refused as exc:
        return await render_moderation(request, error=f"{row.action} of «{post}»: {exc.message}", status=exc.status)
    return back_to_moderation(request, f"{row.action.capitalize()} of «{post}»: {done.message}")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/moderation", queue_page),
        web.post(r"/moderation/{action_id:\d+}/review", review),
        web.post("/moderation/bulk", review_bulk),
        web.post(r"/moderation/alerts/{action_id:\d+}/acknowledge", acknowledge_alert),
        web.post(r"/moderation/replies/{reply_id:\d+}/delete", delete_bot_reply),
        web.post(r"/moderation/actions/{action_id:\d+}/settle", settle_action),
    ]
