"""The console's form that settles a reply nobody knows was posted (:mod:`console.settle`), on the
conversation it belongs to and, for a bot's reply, on the moderation page (``back=moderation``).
Only a role that may send replies uses it (agents; admin). A settled reply returns to its page with
a short confirmation; a refusal (the platform answered meanwhile, an id that names no reply, the
public guard) is shown there with what was pasted, and the override a person may give where the
guard allows one. Moderation actions are settled on the moderation page (:mod:`console.moderation`).
A reply out twice (:mod:`service.duplicates`) loses one copy through the conversation's form too.
"""

from __future__ import annotations

from aiohttp import web

from console import flash, settle
from console.auth import require
from console.conversation import AGENTS, back, existing, form_of, render_conversation
from console.keys import RUNTIME
from console.moderation import back_to_moderation, render_moderation
from console.paths import path_id
from models import Reply
from triage.pii import detect_pii

MAX_PASTED = 500


async def _reply_of(request: web.Request, conv_id: int, reply_id: int) -> Reply:
    """The reply, if it is one of this conversation's (else 404)."""
    async with request.app[RUNTIME].db.session() as session:
        await existing(session, conv_id)
        reply = await session.get(Reply, reply_id)
    if reply is None or reply.conversation_id != conv_id:
        raise web.HTTPNotFound(reason="no such reply in this conversation")
    return reply


@require(*AGENTS)
async def settle_reply(request: web.Request) -> web.StreamResponse:
    """``outcome`` posted (``platform_ref``: its id or address, optional) or not_posted (sent again;
    ``public_anyway`` overrules an overridable refusal of the public guard)."""
    conv_id, reply_id = path_id(request), path_id(request, "reply_id")
    form = await form_of(request)
    outcome = str(form.get("outcome") or "")
    pasted = str(form.get("platform_ref") or "").strip()[:MAX_PASTED + 1]
    to_moderation = form.get("back") == "moderation"
    reply = await _reply_of(request, conv_id, reply_id)
    try:
        if outcome == "posted":
            done = await settle.reply_posted(request, reply_id, pasted)
        elif outcome == "not_posted":
            done = await settle.reply_again(request, reply_id, override=form.get("public_anyway") == "1")
        else:
            raise settle.Refused(400, "say whether the reply was posted on its platform")
    except settle.Refused as exc:
        if to_moderation:
            return await render_moderation(request, error=exc.message, status=exc.status)
        kept = "" if detect_pii(pasted) else pasted  # a flash cookie is signed, not encrypted
        return await render_conversation(request, status=exc.status, error=exc.message, focus=reply.mention_id,
                                         settling={"reply": reply_id, "pasted": kept,
                                                   "overridable": exc.overridable})
    if to_moderation:
        return back_to_moderation(request, done.message)
    return flash.redirect(request, f"/conversations/{conv_id}", notice=done.message) or back(conv_id)


@require(*AGENTS)
async def copy_gone(request: web.Request) -> web.StreamResponse:
    """A reply out twice loses one copy (:func:`console.settle.copy_gone`): ``copy`` earlier or later,
    ``how`` delete (the service deletes it on the platform) or deleted (a person deleted it there)."""
    conv_id, reply_id = path_id(request), path_id(request, "reply_id")
    form = await form_of(request)
    reply = await _reply_of(request, conv_id, reply_id)
    try:
        how = str(form.get("how") or "")
        if how not in ("delete", "deleted"):
            raise settle.Refused(400, "say whether to delete the copy or that it was deleted")
        done = await settle.copy_gone(request, reply_id, str(form.get("copy") or ""), delete=how == "delete")
    except settle.Refused as exc:
        return await render_conversation(request, status=exc.status, error=exc.message, focus=reply.mention_id)
    return flash.redirect(request, f"/conversations/{conv_id}", notice=done.message) or back(conv_id)


def routes() -> list[web.RouteDef]:
    return [web.post(r"/conversations/{id:\d+}/replies/{reply_id:\d+}/settle", settle_reply),
            web.post(r"/conversations/{id:\d+}/replies/{reply_id:\d+}/copies", copy_gone)]
