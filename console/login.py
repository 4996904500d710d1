"""Login and logout pages, and the demo account of the embedded mode."""

from __future__ import annotations

import os
import secrets
from typing import Any

from aiohttp import web
from sqlalchemy import func, select

from console.auth import AUTH, create_user, verify_password
from console.keys import RUNTIME
from console.navigation import home_for
from console.render import render
from models import User
from service.audit import record

DEMO_USER = "demo"


async def ensure_demo_account(db: Any, var_dir: Any) -> tuple[str, str] | None:
    """On a database without users, the demo mode creates an admin ``demo`` with a random password,
    kept in ``var/demo-password`` (owner-only) and shown on the login page of a local demo."""
    async with db.session() as session:
        if await session.scalar(select(func.count()).select_from(User)):
            path = var_dir / "demo-password"
            return (DEMO_USER, path.read_text().strip()) if path.exists() else None
        password = secrets.token_urlsafe(12)
        await create_user(session, DEMO_USER, password, "admin")
        record(session, "system", "user.created", "user", DEMO_USER, reason="demo mode", role="admin")
        await session.commit()
    var_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(var_dir / "demo-password", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password)
    return DEMO_USER, password


def _next(request: web.Request, form: Any = None) -> str:
    """Where the person asked to go (a local path only), or "" for their role's own page."""
    target = str((form or {}).get("next") or request.query.get("next") or "")
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else ""


async def login_page(request: web.Request) -> web.Response:
    return render(request, "login.html", next=_next(request), error=None)


async def login_submit(request: web.Request) -> web.Response:
    form = await request.post()
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    rt = request.app[RUNTIME]
    async with rt.db.session() as session:
        user = await session.scalar(select(User).where(User.username == username))
        ok = user is not None and user.active and verify_password(user.password_hash, password)
        record(session, f"session:{username[:100]}", "login.success" if ok else "login.failure", "user",
               user.id if user else None, ip=request.remote)
        await session.commit()
    if not ok:
        return render(request, "login.html", next=_next(request, form), error="Wrong user name or password.",
                      status=401)
    response = web.HTTPFound(_next(request, form) or home_for(user.role))
    request.app[AUTH].login(response, user)
    return response


async def logout(request: web.Request) -> web.Response:
    response = web.HTTPFound("/login")
    request.app[AUTH].logout(response)
    return response


def routes() -> list[web.RouteDef]:
    return [web.get("/login", login_page), web.post("/login", login_submit), web.post("/logout", logout)]
