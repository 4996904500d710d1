"""Where each role goes: the nav bar shows only the pages the signed-in role may open, and signing
in lands on the role's own page. Both read the roles from the routes' ``@require``, so the nav
cannot drift from what the pages actually allow."""

from __future__ import annotations

from typing import Any

from aiohttp import web

# short labels: an admin's eleven links and who is signed in fit one row of a 1366 px laptop; each
# page's own heading gives the long name ("Routed mentions", "Private cases")
NAV = (("/queue", "Queue"), ("/mentions", "Mentions"), ("/cases", "Cases"),
       ("/incidents", "Incidents"), ("/moderation", "Moderation"), ("/knowledge", "Knowledge"),
       ("/digest", "Digest"), ("/service-metrics", "Metrics"), ("/connectors", "Connectors"),
       ("/admin/users", "Admin"), ("/admin/deadletters", "Dead letters"))
HOME = {"agent": "/queue", "moderator": "/moderation", "marketing": "/digest", "admin": "/queue"}


def home_for(role: str | None) -> str:
    return HOME.get(role or "", "/mentions")


def may_open(app: web.Application, role: str, path: str) -> bool:
    """Whether ``role`` gets past the guard of the GET page at ``path`` (False when there is none)."""
    for route in app.router.routes():
        if route.method == "GET" and route.resource is not None and route.resource.canonical == path:
            roles = getattr(route.handler, "roles", None)
            return roles is None or role == "admin" or role in roles
    return False


def nav_links(app: web.Application, principal: Any) -> list[tuple[str, str]]:
    """The nav bar of a signed-in person (a bot token never sees a page, so it has none)."""
    if principal is None or principal.via != "session":
        return []
    return [(href, label) for href, label in NAV if may_open(app, principal.role, href)]
