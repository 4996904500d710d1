"""Administration pages: the users with their roles and tokens, and the audit log."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import func, select

from console.auth import require
from console.keys import PRINCIPAL, RUNTIME
from console.queue import path_id
from console.render import render
from models import ApiToken, AuditEvent, User
from service.audit import record

PAGE = 100


@require("admin")
async def users_page(request: web.Request) -> web.Response:
    async with request.app[RUNTIME].db.session() as session:
        users = list(await session.scalars(select(User).order_by(User.username)))
        tokens = {uid: n for uid, n in (await session.execute(
            select(ApiToken.user_id, func.count()).where(ApiToken.revoked_at.is_(None))
            .group_by(ApiToken.user_id))).all()}
    return render(request, "admin_users.html", users=users, tokens=tokens)


@require("admin")
async def set_active(request: web.Request) -> web.Response:
    p = request[PRINCIPAL]
    user_id = path_id(request)
    active = (await request.post()).get("active") == "1"
    if user_id == p.user_id and not active:
        raise web.HTTPBadRequest(reason="you cannot disable your own account")
    async with request.app[RUNTIME].db.session() as session:
        user = await session.get(User, user_id)
        if user is None:
            raise web.HTTPNotFound(reason="no such user")
        user.active = active
        record(session, p.actor, "user.enabled" if active else "user.disabled", "user", user_id)
        await session.commit()
    raise web.HTTPFound("/admin/users")


@require("admin")
async def audit_page(request: web.Request) -> web.Response:
    action = request.query.get("action", "")[:100]
    actor = request.query.get("actor", "")[:100]
    try:
        before = int(request.query.get("before", "0") or 0)
    except ValueError as exc:
        raise web.HTTPBadRequest(reason="before must be an integer") from exc
    q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(PAGE)
    if action:
        q = q.where(AuditEvent.action == action)
    if actor:
        q = q.where(AuditEvent.actor == actor)
    if 0 < before < 2**62:
        q = q.where(AuditEvent.id < before)
    async with request.app[RUNTIME].db.session() as session:
        events = list(await session.scalars(q))
        actions = sorted(await session.scalars(select(AuditEvent.action).distinct()))
    return render(request, "admin_audit.html", events=events, action=action, actor=actor, actions=actions,
                  next_before=events[-1].id if len(events) == PAGE else None)


def routes() -> list[web.RouteDef]:
    return [web.get("/admin/users", users_page), web.post("/admin/users/{id:\\d+}/active", set_active),
            web.get("/admin/audit", audit_page)]
