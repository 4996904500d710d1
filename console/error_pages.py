"""Errors a person meets in the console, shown inside the console's layout (nav, the message, a way
back) instead of a bare "403: ..." text page. Programs keep their answers: the API and anything
that sent a token get JSON (console.app.errors), and a client that did not ask for HTML gets the
plain status and reason as before."""

from __future__ import annotations

import re
from http import HTTPStatus

from aiohttp import web

from console.keys import PRINCIPAL
from console.navigation import home_for
from console.render import render

NOT_FOR_PEOPLE = ("/api/", "/secure/", "/webhooks/", "/static/")  # JSON, the customer's pages, machines
OBJECT_PAGE = re.compile(r"^/(conversations|cases|incidents|customers)/(\d+)(?:/|$)")
KEPT_HEADERS = ("Allow", "Retry-After")


def wants_html(request: web.Request) -> bool:
    """A browser on a console page: it asked for HTML and carries no token."""
    return (not request.path.startswith(NOT_FOR_PEOPLE) and "Authorization" not in request.headers
            and "text/html" in request.headers.get("Accept", ""))


def way_back(request: web.Request) -> list[tuple[str, str]]:
    """Links out of the error: the page whose form was refused, then the person's own start page."""
    principal = request.get(PRINCIPAL)
    links = []
    match = OBJECT_PAGE.match(request.path)
    if match and (request.method != "GET" or request.path != match.group(0).rstrip("/")):
        kind = {"conversations": "conversation", "cases": "case", "incidents": "incident",
                "customers": "customer record"}[match.group(1)]
        links.append((f"/{match.group(1)}/{match.group(2)}", f"Back to the {kind}"))
    if principal is None:
        links.append(("/login", "Sign in"))
    else:
        links.append((home_for(principal.role), "Your start page"))
    return links


def error_page(request: web.Request, exc: web.HTTPException) -> web.Response:
    try:
        phrase = HTTPStatus(exc.status).phrase
    except ValueError:
        phrase = ""
    title = f"{exc.status} {phrase}".strip()
    message = exc.reason if exc.reason and exc.reason != phrase else {
        404: "There is no such page, or what it showed no longer exists.",
        405: "This address takes a form; open the page and use its button.",
    }.get(exc.status, exc.reason or title)
    response = render(request, "error.html", status=exc.status, title=title, message=message,
                      links=way_back(request))
    for header in KEPT_HEADERS:
        if header in exc.headers:
            response.headers[header] = exc.headers[header]
    return response
