"""The dead-letter page (admins): messages that failed their stage on every delivery, read and
retried through this process's own bus, so it works in both modes. The in-process bus of
`socialcare run` keeps its dead letters inside the service, out of the CLI's reach: without this page
an operator of the default mode could only count them (the Prometheus gauge).

Payloads can hold personal data, so the listing leaves them out; showing one is a POST (CSRF, no
prefetch), audited before the payload is sent, and redacted. Retry and discard ask for confirmation
on a page that pins the ids it lists, so a "retry all" acts on what the admin saw, not on whatever
failed since; both are audited with ids only. A bus that does not answer (Redis down) is a message
on the page, not a 500. Rows, redaction, outcomes and audit live in service.deadletters, shared with
the bot API's /api/v1/deadletters (console.api.deadletters).
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from aiohttp import web

from console.api.common import query_int
from console.auth import require
from console.keys import PRINCIPAL, RUNTIME
from console.render import render
from service import deadletters
from service.bus import BusUnavailable, DeadLetter
from service.stages.base import STAGES

PAGE, MAX_SHOWN = deadletters.PAGE, deadletters.MAX_SHOWN  # rows shown at first (and added by "show more"), at most
AT_ONCE = deadletters.AT_ONCE  # dead letters one confirmed retry or discard acts on (the form carries their ids)
LISTED = 50  # of those, listed on the confirmation page
VERBS = {"retry": ("Retry", "retried"), "discard": ("Discard", "discarded")}


def _away(request: web.Request, exc: BusUnavailable) -> web.Response:
    return render(request, "admin_deadletters.html", status=503, away=str(exc), rows=[], counts={}, topic="",
                  topics=STAGES, more=0, total=0, limit=PAGE, done="", mode=_mode(request))


def _mode(request: web.Request) -> str:
    settings = request.app[RUNTIME].settings
    return (f"the Redis bus (stream {settings.bus_prefix}:deadletter)" if settings.bus == "redis"
            else "this process's in-process bus: they are lost when the service stops")


@require("admin")
async def deadletters_page(request: web.Request) -> web.Response:
    """Dead letters, oldest first, optionally of one stage; the first ``limit`` and how many more."""
    topic = request.query.get("topic", "")[:100]
    limit = query_int(request, "limit", PAGE, 1, MAX_SHOWN)
    try:
        dead = await deadletters.listed(request.app[RUNTIME].bus)
    except BusUnavailable as exc:
        return _away(request, exc)
    chosen = [d for d in dead if not topic or d.topic == topic]
    counts = deadletters.per_topic(dead)
    return render(request, "admin_deadletters.html", away="", rows=[deadletters.display(d) for d in chosen[:limit]],
                  counts=counts, topic=topic, topics=sorted(set(STAGES) | set(counts)), total=len(chosen),
                  more=max(len(chosen) - limit, 0), limit=limit, next_limit=min(limit + PAGE, MAX_SHOWN),
                  done=request.query.get("done", "")[:300], mode=_mode(request))


@require("admin")
async def payload_page(request: web.Request) -> web.Response:
    """One dead letter with its payload, redacted; the view is audited (committed) before it is shown."""
    dead_id = request.match_info["id"]
    try:
        dead = next((d for d in await deadletters.listed(request.app[RUNTIME].bus) if d.id == dead_id), None)
    except BusUnavailable as exc:
        return _away(request, exc)
    if dead is None:
        raise web.HTTPNotFound(reason="no such dead letter (retried or discarded since?)")
    await deadletters.audit_view(request.app[RUNTIME].db, request[PRINCIPAL].actor, dead)
    payload = json.dumps(deadletters.shown_payload(dead), indent=2, ensure_ascii=False, sort_keys=True)
    return render(request, "admin_deadletter_payload.html", d=deadletters.display(dead), payload=payload)


async def _chosen(request: web.Request, dead: list[DeadLetter]) -> tuple[list[DeadLetter], list[str], str]:
    """The dead letters a form names (``id`` fields, or ``all`` of ``topic``), the ids it named that are
    gone, and the topic."""
    form = await request.post()
    ids = list(dict.fromkeys(str(v)[:100] for v in form.getall("id", [])))
    topic = str(form.get("topic", ""))[:100]
    every = form.get("all") == "1"
    if ids and every:
        raise web.HTTPBadRequest(reason="name dead letters or all of a stage, not both")
    if not ids and not every:
        raise web.HTTPBadRequest(reason="choose the dead letters, or all of a stage")
    if len(ids) > AT_ONCE:
        raise web.HTTPBadRequest(reason=f"at most {AT_ONCE} dead letters at once")
    if every:
        return [d for d in dead if not topic or d.topic == topic], [], topic
    by_id = {d.id: d for d in dead}
    return [by_id[i] for i in ids if i in by_id], [i for i in ids if i not in by_id], topic


async def _act(request: web.Request, verb: str) -> web.StreamResponse:
    """Confirm, then retry or discard: unconfirmed, a page listing what the button will act on."""
    rt = request.app[RUNTIME]
    confirmed = (await request.post()).get("confirmed") == "1"
    try:
        chosen, gone, topic = await _chosen(request, await deadletters.listed(rt.bus))
        if not confirmed:
            return render(request, "admin_deadletter_confirm.html", verb=verb, label=VERBS[verb][0],
                          rows=[deadletters.display(d) for d in chosen[:LISTED]],
                          ids=[d.id for d in chosen[:AT_ONCE]], total=len(chosen), gone=gone, topic=topic,
                          at_once=AT_ONCE)
        ids = [d.id for d in chosen[:AT_ONCE]]
        outcome = await deadletters.act(rt.bus, verb, ids)
    except deadletters.Interrupted as exc:  # what was done before the bus went away is audited
        await deadletters.audit_action(rt.db, request[PRINCIPAL].actor, verb, ids, exc.outcome,
                                       topic=topic or None, gone=gone)
        return _away(request, exc)
    except BusUnavailable as exc:
        return _away(request, exc)
    await deadletters.audit_action(rt.db, request[PRINCIPAL].actor, verb, ids, outcome, topic=topic or None,
                                   gone=gone)
    done = f"{VERBS[verb][1]} {len(outcome.done)} dead letter(s)"
    if gone_too := len(outcome.missing) + len(gone):
        done += f"; {gone_too} were gone already"
    if outcome.refused:
        done += f"; {len(outcome.refused)} cannot be retried (undecodable): discard them"
    raise web.HTTPSeeOther("/admin/deadletters?" + urlencode({"topic": topic, "done": done}))


@require("admin")
async def retry(request: web.Request) -> web.StreamResponse:
    return await _act(request, "retry")


@require("admin")
async def discard(request: web.Request) -> web.StreamResponse:
    return await _act(request, "discard")


def routes() -> list[web.RouteDef]:
    return [web.get("/admin/deadletters", deadletters_page),
            web.post(r"/admin/deadletters/{id:[\w.:-]{1,100}}/payload", payload_page),
            web.post("/admin/deadletters/retry", retry), web.post("/admin/deadletters/discard", discard)]
