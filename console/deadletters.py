"""The dead-letter page (admins): messages that failed their stage on every delivery, read and
retried through this process's own bus, so it works in both modes. The in-process bus of
`socialcare run` keeps its dead letters inside the service, out of the CLI's reach: without this page
an operator of the default mode could only count them (the Prometheus gauge).

Payloads can hold personal data, so the listing leaves them out; showing one is a POST (CSRF, no
prefetch), audited before the payload is sent, and redacted. Retry and discard ask for confirmation
on a page that pins the ids it lists, so a "retry all" acts on what the admin saw, not on whatever
failed since; both are audited with ids only. A bus that does not answer (Redis down) is a message
on the page, not a 500.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from console.api.common import query_int
from console.auth import require
from console.keys import PRINCIPAL, RUNTIME
from console.render import render
from service import deadletters
from service.audit import record
from service.bus import Bus, BusUnavailable, DeadLetter
from service.stages.base import STAGES

PAGE = 100  # rows shown at first, and added by "show more"
MAX_SHOWN = 10_000
AT_ONCE = 1000  # dead letters one confirmed retry or discard acts on (the form carries their ids)
LISTED = 50  # of those, listed on the confirmation page
VERBS = {"retry": ("Retry", "retried"), "discard": ("Discard", "discarded")}


async def _dead(bus: Bus) -> list[DeadLetter]:
    """Every dead letter, oldest first; BusUnavailable at once when the bus does not answer (a Redis
    call would otherwise retry for half a minute before giving up)."""
    if not await bus.ping():
        raise BusUnavailable("the message bus does not answer")
    return await bus.dead_letters(None, deadletters.ALL)


def _away(request: web.Request, exc: BusUnavailable) -> web.Response:
    return render(request, "admin_deadletters.html", status=503, away=str(exc), rows=[], counts={}, topic="",
                  topics=STAGES, more=0, total=0, limit=PAGE, done="", mode=_mode(request))


def _mode(request: web.Request) -> str:
    settings = request.app[RUNTIME].settings
    return (f"the Redis bus (stream {settings.bus_prefix}:deadletter)" if settings.bus == "redis"
            else "this process's in-process bus: they are lost when the service stops")


def _display(d: DeadLetter) -> dict[str, Any]:
    """A row for people: the CLI's fields, the reason redacted (an exception message may quote a post)."""
    out = deadletters.row(d)
    out["reason"] = deadletters.redacted(out["reason"])
    return out


@require("admin")
async def deadletters_page(request: web.Request) -> web.Response:
    """Dead letters, oldest first, optionally of one stage; the first ``limit`` and how many more."""
    topic = request.query.get("topic", "")[:100]
    limit = query_int(request, "limit", PAGE, 1, MAX_SHOWN)
    try:
        dead = await _dead(request.app[RUNTIME].bus)
    except BusUnavailable as exc:
        return _away(request, exc)
    chosen = [d for d in dead if not topic or d.topic == topic]
    counts = deadletters.per_topic(dead)
    return render(request, "admin_deadletters.html", away="", rows=[_display(d) for d in chosen[:limit]],
                  counts=counts, topic=topic, topics=sorted(set(STAGES) | set(counts)), total=len(chosen),
                  more=max(len(chosen) - limit, 0), limit=limit, next_limit=min(limit + PAGE, MAX_SHOWN),
                  done=request.query.get("done", "")[:300], mode=_mode(request))


@require("admin")
async def payload_page(request: web.Request) -> web.Response:
    """One dead letter with its payload, redacted; the view is audited (committed) before it is shown."""
    dead_id = request.match_info["id"]
    try:
        dead = next((d for d in await _dead(request.app[RUNTIME].bus) if d.id == dead_id), None)
    except BusUnavailable as exc:
        return _away(request, exc)
    if dead is None:
        raise web.HTTPNotFound(reason="no such dead letter (retried or discarded since?)")
    async with request.app[RUNTIME].db.session() as session:
        record(session, request[PRINCIPAL].actor, "deadletter.payload_viewed", "deadletter", dead.id,
               topic=dead.topic)
        await session.commit()
    payload = json.dumps(deadletters.shown_payload(dead), indent=2, ensure_ascii=False, sort_keys=True)
    return render(request, "admin_deadletter_payload.html", d=_display(dead), payload=payload)


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
    bus = request.app[RUNTIME].bus
    confirmed = (await request.post()).get("confirmed") == "1"
    try:
        chosen, gone, topic = await _chosen(request, await _dead(bus))
        if not confirmed:
            return render(request, "admin_deadletter_confirm.html", verb=verb, label=VERBS[verb][0],
                          rows=[_display(d) for d in chosen[:LISTED]], ids=[d.id for d in chosen[:AT_ONCE]],
                          total=len(chosen), gone=gone, topic=topic, at_once=AT_ONCE)
        ids = [d.id for d in chosen[:AT_ONCE]]
        details: dict[str, Any] = {"ids": ids}
        if verb == "retry":
            outcome = await deadletters.retry(bus, ids)
            details = {"ids": outcome.done, "missing": outcome.missing + gone,
                       "refused": [i for i, _ in outcome.refused]}
            n = len(outcome.done)
        else:
            n = await bus.delete_dead_letters(ids)
            details["missing"] = gone
    except BusUnavailable as exc:
        return _away(request, exc)
    async with request.app[RUNTIME].db.session() as session:
        record(session, request[PRINCIPAL].actor, f"deadletter.{VERBS[verb][1]}", "deadletter",
               ids[0] if len(ids) == 1 else None, topic=topic or None, count=n, **details)
        await session.commit()
    done = f"{VERBS[verb][1]} {n} dead letter(s)"
    if gone_too := len(details["missing"]) + (len(ids) - n if verb == "discard" else 0):
        done += f"; {gone_too} were gone already"
    if details.get("refused"):
        done += f"; {len(details['refused'])} cannot be retried (undecodable): discard them"
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
