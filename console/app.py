"""The aiohttp application: health, metrics, the routed-mentions page and the API."""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import generate_latest

from console import login
from console.api.common import error as json_error
from console.api.common import query_int
from console.auth import AUTH, Auth, bearer_token, principal_middleware, require
from console.error_pages import (
    customer_error_page,
    customer_wants_html,
    error_page,
    unavailable_response,
    wants_html,
)
from console.forms import check_form
from console.keys import DEMO_LOGIN, PRINCIPAL, RUNTIME
from console.navigation import home_for
from console.queries import in_care_team, post_state, routed_counts, routed_mentions
from console.render import render
from listener.protocol import NormalizedMention
from models import ROUTE_OUTCOMES
from service import bad_requests
from service.outages import note_outage, unavailable

HERE = Path(__file__).resolve().parent
log = logging.getLogger("socialcare.web")


@web.middleware
async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """API errors, and every refusal to an unauthenticated machine client, are JSON; a form that cannot
    be read is refused (console.forms) before any handler or sign-in lookup; the database or Redis
    away is 503 with Retry-After, logged once per back-off (service.outages); a crash is logged
    (without request bodies) and answered with 500."""
    try:
        if any("\x00" in k or "\x00" in v for k, v in request.query.items()):  # no database stores NUL
            raise web.HTTPBadRequest(reason="query values may not contain NUL characters")
        await check_form(request)  # undecodable, NUL, not text: 400 here, not 500 in a handler
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and (request.path.startswith("/api/") or exc.status == 401):
            response = json_error(exc.status, exc.reason)
            for header in ("WWW-Authenticate", "Allow", "Retry-After"):  # what the client needs to act on it
                if header in exc.headers:
                    response.headers[header] = exc.headers[header]
            return response
        if exc.status >= 400 and wants_html(request):  # a person: the message inside the console's layout
            return error_page(request, exc)
        if exc.status >= 400 and customer_wants_html(request):  # a customer: the secure channel's page
            return customer_error_page(request, exc)
        raise
    except Exception as exc:  # noqa: BLE001
        resource = request.match_info.route.resource  # its pattern: a path may hold a /secure/<token>
        if (away := unavailable(exc)) is not None:  # not a bug: no traceback, one line per back-off
            where = resource.canonical if resource is not None else "(no route)"
            note_outage(log, away, exc, f"{request.method} {where}")
            return unavailable_response(request, away)
        log.exception("unhandled error on %s %s", request.method,
                      resource.canonical if resource is not None else "(no route)")
        if wants_html(request):
            return error_page(request, web.HTTPInternalServerError(reason="Something went wrong on our side."))
        if customer_wants_html(request):
            return customer_error_page(request, web.HTTPInternalServerError())
        return json_error(500, "internal error")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when what this process needs answers: database and bus; models only if it triages."""
    from service.health import readiness, readiness_response

    return readiness_response(await readiness(request.app[RUNTIME]))


@require("admin", scope="metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics (an admin session, or a bearer token with the ``metrics`` scope)."""
    rt = request.app[RUNTIME]
    if rt.metrics is None:
        return web.Response(text="")
    from service.metrics import refresh_bus_gauges, refresh_connector_gauges

    await refresh_bus_gauges(rt.metrics, rt.bus)  # lag, pending, dead letters: read from the shared bus
    await refresh_connector_gauges(rt.metrics, rt)  # up, state, last poll: alerts on a stopped connector
    return web.Response(body=generate_latest(rt.metrics.registry), content_type="text/plain")


MAX_OFFSET = 1_000_000  # as the OpenAPI description says; beyond it the database would refuse the number


def _limit(request: web.Request) -> tuple[int, int]:
    """``limit`` 1-500 and ``offset`` 0-MAX_OFFSET, as the OpenAPI description says: a value outside
    is refused, not quietly moved (a bot asking for 0 or 10,000 rows has a bug worth hearing of)."""
    return query_int(request, "limit", 100, 1, 500), query_int(request, "offset", 0, 0, MAX_OFFSET)


@require("agent", "moderator", "marketing")
async def mentions_page(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    outcome = request.query.get("outcome") or None
    if outcome and outcome not in ROUTE_OUTCOMES:
        raise web.HTTPBadRequest(reason="unknown outcome")
    limit, offset = _limit(request)
    private = in_care_team(request[PRINCIPAL].role)  # private matters are the care team's alone
    async with rt.db.session() as session:
        rows = await routed_mentions(session, outcome=outcome, limit=limit, offset=offset, private=private)
        counts = await routed_counts(session, private=private)
    rows = [{**r, "state": post_state(r)} for r in rows]
    return render(request, "mentions.html", mentions=rows, outcome=outcome, outcomes=ROUTE_OUTCOMES,
                  counts=sorted(counts), counts_total=sum(n for _, n in counts), withheld=not private)


@require("agent", "moderator", "marketing", scope="mentions:read")
async def api_mentions(request: web.Request) -> web.Response:
    """Routed mentions by priority (limit/offset pages), or with ``since_id`` the ones after a cursor in
    id order: a polling bot passes back ``next_since_id`` and misses nothing, however the priorities move."""
    from console.api.common import known_query, query_choice
    from console.paths import MAX_ID

    rt = request.app[RUNTIME]
    known_query(request, "outcome", "platform", "limit", "offset", "since_id")
    outcome = query_choice(request, "outcome", ROUTE_OUTCOMES)
    limit, offset = _limit(request)
    since_id = query_int(request, "since_id", -1, 0, MAX_ID)
    since_id = None if since_id < 0 else since_id
    if since_id is not None and offset:
        raise web.HTTPBadRequest(reason="since_id replaces offset: give one or the other")
    async with rt.db.session() as session:
        rows = await routed_mentions(session, outcome=outcome, platform=request.query.get("platform") or None,
                                     limit=limit, offset=offset, since_id=since_id,
                                     private=in_care_team(request[PRINCIPAL].role))
    body: dict[str, Any] = {"mentions": rows, "limit": limit, "offset": offset}
    if since_id is not None:
        body.update(since_id=since_id, next_since_id=rows.next_since_id, passed_unrouted=rows.passed_unrouted)
    return web.json_response(body)


async def api_ingest(request: web.Request) -> web.Response:
    """Mentions in (JSON lines of NormalizedMention fields); used by `socialcare replay` in the
    embedded mode. Authorized by the local ingest token the running service wrote under var/."""
    from listener.validation import mention_from_dict
    from listener.webhook import TooDeep, loads, published_within
    from service.outages import REDIS

    rt = request.app[RUNTIME]
    token = bearer_token(request) or ""
    principal = request.get(PRINCIPAL)
    local = bool(rt.ingest_token) and hmac.compare_digest(token.encode(), rt.ingest_token.encode())
    if not local and principal is None:
        return json_error(401, "missing or wrong ingest token")
    if not local and not (principal.via == "token" and ({"ingest", "*"} & set(principal.scopes))
                          and principal.role == "admin"):  # who they are is known: it is not enough
        return json_error(403, "ingest needs the local ingest token or an admin's token with the ingest scope")
    body = await request.read()
    mentions: list[NormalizedMention] = []
    errors_ = []
    for number, line in enumerate(body.decode("utf-8", "replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:  # checked as ingest will store it: a bad line is refused here, not dead-lettered later
            mentions.append(mention_from_dict(loads(line)))
        except TooDeep:
            errors_.append({"line": number, "error": "not valid JSON: nested too deeply"})
        except json.JSONDecodeError as exc:
            errors_.append({"line": number, "error": f"not valid JSON: {exc.msg} at column {exc.colno}"})
        except ValueError as exc:
            errors_.append({"line": number, "error": str(exc)[:500]})
    if errors_:
        return web.json_response({"error": {"status": 400, "message": "bad lines", "lines": errors_}}, status=400)
    if (refused := await published_within(rt.settings, rt.submit(mentions), log,
                                          f"POST /api/v1/ingest: {len(mentions)} mention(s)",
                                          lambda: unavailable_response(request, REDIS))) is not None:
        return refused
    return web.json_response({"accepted": len(mentions)}, status=202)


async def index(request: web.Request) -> web.Response:
    principal = request.get(PRINCIPAL)  # a signed-in person starts on their role's page
    raise web.HTTPFound(home_for(principal.role) if principal is not None else "/mentions")


def create_app(runtime: Any, demo_login: tuple[str, str] | None = None) -> web.Application:
    settings = runtime.settings
    secret = settings.secret("secret_key") or secrets.token_urlsafe(32)
    app = web.Application(middlewares=[errors, bad_requests.limits, principal_middleware(runtime.db)],
                          client_max_size=settings.webhook_max_bytes, handler_args=bad_requests.HANDLER_ARGS)
    app[RUNTIME] = runtime
    app[AUTH] = Auth(secret, cookie_secure=settings.cookie_secure)
    app[DEMO_LOGIN] = demo_login
    app.router.add_routes(login.routes(app[AUTH].secret))
    from console import admin, api, digest_schedule, digest_views, events, metrics_views, queue, webhooks_out
    events.install(app)  # the care team's console, bot API, digest and metrics (issue 7)
    webhooks_out.install(app)
    digest_schedule.install(app)
    from service import retention  # the daily purge, when SOCIALCARE_RETENTION_DAYS is set
    retention.install(app)
    app.router.add_routes(queue.routes())
    app.router.add_routes(api.routes())
    app.router.add_routes(admin.routes())
    from console import deadletters  # dead letters of either bus, through this process's own
    app.router.add_routes(deadletters.routes())
    app.router.add_routes(digest_views.routes())
    app.router.add_routes(metrics_views.routes())
    from console import cases, secure  # private cases and the customer's secure channel (issue 6)
    app.router.add_routes(secure.routes())
    app.router.add_routes(cases.routes())
    from console import incidents, knowledge, moderation  # community: incidents, moderation, KB (issue 5)
    app.router.add_routes(incidents.routes())
    app.router.add_routes(moderation.routes())
    from console import settle_forms  # replies and actions interrupted mid-call, settled by a person
    app.router.add_routes(settle_forms.routes())
    app.router.add_routes(knowledge.routes())
    from console import connectors  # listener: each connector's state and last error (issue 3)
    app.router.add_routes(connectors.routes())
    app.cleanup_ctx.append(secure.escalation_context)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/mentions", mentions_page)
    app.router.add_get("/api/v1/mentions", api_mentions)
    app.router.add_post("/api/v1/ingest", api_ingest)
    app.router.add_static("/static/", HERE / "static")
    for routes in runtime.extra_routes:
        app.router.add_routes(routes)
    return app
