"""Dead letters over the bot API: the /admin/deadletters page for programs (an on-call runbook, a
reply bot's operator), with a bearer token of scope ``deadletters`` on an admin, the page's role.

Rows, redaction, outcomes and audit come from service.deadletters, as the page's do (the CLI
shares its rows and retries), so they say the same. Payloads can hold personal data: the listing leaves them out, and one is
shown only redacted, after its view is audited. Retry and discard act on the ids the body names
(those a listing returned), never on "all of a stage", so that, as on the page, a program acts on
what it saw and not on whatever failed since. A bus that does not answer is a 503 saying so.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field, StringConstraints

from console.api.common import ApiError, Body, api, known_query, parse, query_choice, query_int
from console.auth import require
from console.keys import PRINCIPAL, RUNTIME
from service import deadletters
from service.bus import BusUnavailable
from service.stages.base import STAGES

SCOPE = "deadletters"
PAGE, MAX_SHOWN = deadletters.PAGE, deadletters.MAX_SHOWN  # as the page's first rows and its "show more" limit
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"  # in-process "dl-12", Redis "1718000000000-0"
RETRY_AFTER = "30"  # seconds: a Redis restart, not an outage, is the usual cause
DeadLetterId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


class IdsIn(Body):
    ids: list[DeadLetterId] = Field(min_length=1, max_length=deadletters.AT_ONCE,
                                    description="Dead-letter ids, as the listing gives them; a repeated id "
                                                "counts once.")


def _unavailable(exc: BusUnavailable, **extra: Any) -> ApiError:
    error = ApiError(503, f"{exc}: dead letters cannot be read or changed until the message bus is back",
                     **extra)
    error.response.headers["Retry-After"] = RETRY_AFTER
    return error


@require("admin", scope=SCOPE)
@api
async def list_deadletters(request: web.Request) -> web.Response:
    """Dead letters, oldest first, optionally of one topic (stage): the page's rows, reason redacted,
    no payload; ``total`` and ``more`` say how many match and how many are past ``limit``."""
    known_query(request, "topic", "limit")
    topic = query_choice(request, "topic", STAGES)
    limit = query_int(request, "limit", PAGE, 1, MAX_SHOWN)
    rt = request.app[RUNTIME]
    try:
        dead = await deadletters.listed(rt.bus)
    except BusUnavailable as exc:
        raise _unavailable(exc) from None
    chosen = [d for d in dead if topic is None or d.topic == topic]
    return web.json_response({
        "deadletters": [deadletters.display(d) for d in chosen[:limit]], "total": len(chosen),
        "more": max(len(chosen) - limit, 0), "limit": limit, "counts": deadletters.per_topic(dead),
        "bus": rt.settings.bus})


@require("admin", scope=SCOPE)
@api
async def get_deadletter(request: web.Request) -> web.Response:
    """One dead letter with its payload, redacted; the view is audited (committed) before it is sent."""
    known_query(request)
    dead_id = request.match_info["id"]
    if not re.fullmatch(ID_PATTERN, dead_id):
        raise ApiError(404, "no such dead letter")
    rt = request.app[RUNTIME]
    try:
        dead = next((d for d in await deadletters.listed(rt.bus) if d.id == dead_id), None)
    except BusUnavailable as exc:
        raise _unavailable(exc) from None
    if dead is None:
        raise ApiError(404, "no such dead letter (retried or discarded since?)")
    await deadletters.audit_view(rt.db, request[PRINCIPAL].actor, dead)
    return web.json_response({**deadletters.display(dead), "payload": deadletters.shown_payload(dead)})


async def _act(request: web.Request, verb: str) -> web.Response:
    """Retry or discard the body's ids, each once; audited with ids only, even when the bus stops
    answering part-way (a 503 naming what was done, so a program can resume with the rest)."""
    known_query(request)
    body = await parse(request, IdsIn)
    ids = list(dict.fromkeys(body.ids))
    rt, actor = request.app[RUNTIME], request[PRINCIPAL].actor
    try:
        await deadletters.available(rt.bus)
        outcome = await deadletters.act(rt.bus, verb, ids)
    except deadletters.Interrupted as exc:
        await deadletters.audit_action(rt.db, actor, verb, ids, exc.outcome)
        raise _unavailable(exc, done=exc.outcome.done, untried=exc.outcome.untried(ids)) from None
    except BusUnavailable as exc:
        raise _unavailable(exc) from None
    await deadletters.audit_action(rt.db, actor, verb, ids, outcome)
    answer: dict[str, Any] = {deadletters.PAST[verb]: outcome.done, "missing": outcome.missing}
    if verb == "retry":
        answer["refused"] = [{"id": i, "reason": why} for i, why in outcome.refused]  # our words and the id
    return web.json_response(answer)


@require("admin", scope=SCOPE)
@api
async def retry(request: web.Request) -> web.Response:
    """Put dead letters back on their topic with a fresh attempt count (once the cause is fixed)."""
    return await _act(request, "retry")


@require("admin", scope=SCOPE)
@api
async def discard(request: web.Request) -> web.Response:
    """Remove dead letters for good, without retrying them."""
    return await _act(request, "discard")


def routes() -> list[web.RouteDef]:
    # the fixed paths first; {id} is checked in the handler, so that the route reads as documented
    return [web.get("/api/v1/deadletters", list_deadletters), web.post("/api/v1/deadletters/retry", retry),
            web.post("/api/v1/deadletters/discard", discard), web.get("/api/v1/deadletters/{id}", get_deadletter)]
