"""Errors a person meets in the console, shown inside the console's layout (nav, the message, a way
back) instead of a bare "403: ..." text page. Programs keep their answers: the API and anything
that sent a token get JSON (console.app.errors), and a client that did not ask for HTML gets the
plain status and reason as before. A customer on the secure channel's pages is a person too, but
not the console's: their errors come in the channel's own page, without the console's nav.

While the database or Redis is away, every request that needs it is answered 503 with Retry-After
(:func:`unavailable_response`): JSON for programs, the console's page for the care team, the secure
channel's for a customer."""

from __future__ import annotations

import re
from http import HTTPStatus

from aiohttp import web

from console.keys import PRINCIPAL
from console.navigation import home_for
from console.render import render
from service.bad_requests import json_error
from service.outages import DATABASE, RETRY_AFTER_S

NOT_FOR_PEOPLE = ("/api/", "/secure/", "/webhooks/", "/static/")  # JSON, the customer's pages, machines
CUSTOMER_PAGES = "/secure/"
OBJECT_PAGE = re.compile(r"^/(conversations|cases|incidents|customers)/(\d+)(?:/|$)")
KEPT_HEADERS = ("Allow", "Retry-After")


def wants_html(request: web.Request) -> bool:
    """A browser on a console page: it asked for HTML and carries no token."""
    return (not request.path.startswith(NOT_FOR_PEOPLE) and "Authorization" not in request.headers
            and "text/html" in request.headers.get("Accept", ""))


def customer_wants_html(request: web.Request) -> bool:
    """A customer's browser on the secure channel's pages."""
    return (request.path.startswith(CUSTOMER_PAGES) and "Authorization" not in request.headers
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


_CUSTOMER_WORDS = {
    400: ("That didn't work", "What was sent could not be read. Please go back and try again."),
    403: ("That didn't work", "This page was open too long or in another window. Please go back, reload "
          "it and try again."),
    404: ("This page doesn't exist", "Please use the link we sent you."),
    405: ("That didn't work", "Please use the link we sent you."),
    429: ("Please slow down", "Too many requests. Wait a minute and try again."),
    503: ("We'll be right back", "Our secure support is briefly unavailable. Please try again in a minute."),
}


def customer_error_page(request: web.Request, exc: web.HTTPException) -> web.Response:
    """An error on the secure channel's pages, in the channel's own layout: plain words, no console."""
    from console.secure import PRIVATE_HEADERS

    title, message = _CUSTOMER_WORDS.get(exc.status, ("Something went wrong", "Please try again later."))
    response = render(request, "secure_message.html", status=exc.status, title=title, message=message)
    response.headers.update(PRIVATE_HEADERS)
    for header in KEPT_HEADERS:
        if header in exc.headers:
            response.headers[header] = exc.headers[header]
    return response


def unavailable_response(request: web.Request, kind: str) -> web.Response:
    """503 with Retry-After for a request that met the database or Redis away (``kind``, as
    :func:`service.outages.unavailable` names it): the secure channel's page for a customer, the
    console's for a person, JSON for everyone else."""
    what = "The database" if kind == DATABASE else f"{kind} (the message bus)"
    exc = web.HTTPServiceUnavailable(reason=f"{what} is unavailable right now; try again in a few seconds.",
                                     headers={"Retry-After": str(RETRY_AFTER_S)})
    if customer_wants_html(request):
        return customer_error_page(request, exc)
    if wants_html(request):
        return error_page(request, exc)
    response = json_error(503, exc.reason)
    response.headers["Retry-After"] = exc.headers["Retry-After"]
    return response
