"""Administration pages: the users with their roles and tokens, and the audit log."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import select

from console.accounts import AccountError, change_role, revoke_token, tokens_of
from console.auth import SCOPE_ROLES, require
from console.keys import PRINCIPAL, RUNTIME
from console.paths import parse_id, path_id
from console.render import render
from console.secure import ESCALATION
from models import ROLES, ApiToken, AuditEvent, User
from service.audit import record

PAGE = 100


@require("admin")
async def users_page(request: web.Request) -> web.Response:
    """Users with their roles and bot tokens (name, scopes, dates; the value is shown only once, when
    `socialcare users token` creates it, and never stored)."""
    async with request.app[RUNTIME].db.session() as session:
        users = list(await session.scalars(select(User).order_by(User.username)))
        tokens = await tokens_of(session)
    return render(request, "admin_users.html", users=users, tokens=tokens, roles=ROLES,
                  done=request.query.get("done", "")[:200], scope_roles=SCOPE_ROLES)


@require("admin")
async def revoke(request: web.Request) -> web.Response:
    p = request[PRINCIPAL]
    token_id = path_id(request)
    async with request.app[RUNTIME].db.session() as session:
        token = await session.get(ApiToken, token_id)
        if token is None:
            raise web.HTTPNotFound(reason="no such token")
        user = await session.get(User, token.user_id)
        changed = await revoke_token(session, token, p.actor)
        await session.commit()
        what = f"token {token.name} of {user.username if user else '?'}"
    raise web.HTTPSeeOther("/admin/users?" + urlencode({"done": f"{what} revoked" if changed
                                                        else f"{what} was already revoked"}))


@require("admin")
async def set_role(request: web.Request) -> web.Response:
    p = request[PRINCIPAL]
    user_id = path_id(request)
    role = str((await request.post()).get("role", ""))
    if role not in ROLES:
        raise web.HTTPBadRequest(reason=f"unknown role; one of {', '.join(ROLES)}")
    async with request.app[RUNTIME].db.session() as session:
        user = await session.get(User, user_id)
        if user is None:
            raise web.HTTPNotFound(reason="no such user")
        try:
            changed = await change_role(session, user, role, p.actor)
        except AccountError as exc:
            raise web.HTTPConflict(reason=str(exc)) from None
        await session.commit()
        name = user.username
    if changed:
        await request.app[ESCALATION].hub.end_user(user_id)  # the sessions it ended: their case chats too
    raise web.HTTPSeeOther("/admin/users?" + urlencode({"done": f"{name} is now {role}" if changed
                                                        else f"{name} already was {role}"}))


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
        changed = user.active != active
        user.active = active
        record(session, p.actor, "user.enabled" if active else "user.disabled", "user", user_id)
        await session.commit()
    if changed:
        await request.app[ESCALATION].hub.end_user(user_id)  # the sessions it ended: their case chats too
    raise web.HTTPFound("/admin/users")


@require("admin")
async def audit_page(request: web.Request) -> web.Response:
    action = request.query.get("action", "")[:100]
    actor = request.query.get("actor", "")[:100]
    raw = request.query.get("before", "")
    before = parse_id(raw) if raw else None  # the "Older" link's last event id; none: the newest
    if raw and before is None:  # not "١", " 5", "+5" or past int64
        raise web.HTTPBadRequest(reason="before must be an integer")
    q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(PAGE)
    if action:
        q = q.where(AuditEvent.action == action)
    if actor:
        q = q.where(AuditEvent.actor == actor)
    if before is not None:
        q = q.where(AuditEvent.id < before)
    async with request.app[RUNTIME].db.session() as session:
        events = list(await session.scalars(q))
        actions = sorted(await session.scalars(select(AuditEvent.action).distinct()))
    return render(request, "admin_audit.html", events=events, action=action, actor=actor, actions=actions,
                  next_before=events[-1].id if len(events) == PAGE else None)


def routes() -> list[web.RouteDef]:
    return [web.get("/admin/users", users_page), web.post("/admin/users/{id:\\d+}/active", set_active),
            web.post("/admin/users/{id:\\d+}/role", set_role), web.post("/admin/tokens/{id:\\d+}/revoke", revoke),
            web.get("/admin/audit", audit_page)]
