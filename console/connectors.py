"""The connectors page and its JSON twin: is each connector listening, and if not, why.

A connector stopped by a refused credential (401/403) stops alone and waits for a restart; this is
where the care team sees it (the log says it too). Rows come from ``Runtime.connector_report``:
this process's connectors when it polls them (`socialcare run`), otherwise what the
`socialcare listen` process last reported through Redis.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from console.auth import require
from console.keys import RUNTIME
from console.render import render

STATE_LABELS = {"running": "running", "backing_off": "backing off", "stopped": "stopped",
                "starting": "starting", "unknown": "unknown"}


async def _rows(request: web.Request) -> list[dict[str, Any]]:
    rt = request.app[RUNTIME]
    report = getattr(rt, "connector_report", None)
    return await report() if report is not None else []


@require("agent", "moderator")
async def connectors_page(request: web.Request) -> web.Response:
    rows = await _rows(request)
    stopped = [r for r in rows if r["state"] == "stopped" and r.get("stopped_by_error")]
    return render(request, "connectors.html", rows=rows, stopped=stopped, labels=STATE_LABELS)


@require("agent", "moderator", scope="connectors:read")
async def api_connectors(request: web.Request) -> web.Response:
    """Each connector: name, platform, state, last error, what it listens to, last poll time."""
    return web.json_response({"connectors": await _rows(request)})


def routes() -> list[web.RouteDef]:
    return [web.get("/connectors", connectors_page), web.get("/api/v1/connectors", api_connectors)]
