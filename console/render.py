"""Server-side HTML rendering (Jinja2, autoescaped): every view escapes what users wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from console.actors import GLOBALS as ACTORS
from console.times import GLOBALS

HERE = Path(__file__).resolve().parent
_JINJA = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                            autoescape=jinja2.select_autoescape(["html"]))
_JINJA.globals.update(GLOBALS)  # times with their date and how late (console.times)
_JINJA.globals.update(ACTORS)  # "mod1", "a bot (NAME)", "the service" for stored actors (console.actors)


def render(request: web.Request, name: str, *, status: int = 200, **ctx: Any) -> web.Response:
    from console.auth import AUTH
    from console.keys import DEMO_LOGIN, PRINCIPAL
    from console.navigation import nav_links

    principal = request.get(PRINCIPAL)
    csrf = request.app[AUTH].csrf_token(principal.nonce) if principal is not None and principal.nonce else ""
    demo = request.app.get(DEMO_LOGIN)
    html = _JINJA.get_template(name).render(principal=principal, csrf_token=csrf, demo_login=demo,
                                             nav=nav_links(request.app, principal), **ctx)
    return web.Response(text=html, content_type="text/html", status=status,
                        headers={"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                 "style-src 'self'; script-src 'self'; frame-ancestors 'none'",
                                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})
