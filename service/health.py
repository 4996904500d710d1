"""Readiness of one process, and the small health + metrics server a stage worker serves.

A process is ready when what *it* needs answers: every process needs the database and the bus;
only a process that runs the triage stage needs the models. (The web process runs no stage, so
asking it for models would keep it unready forever.)

A worker's server answers every refusal in JSON, as the console's API does (service.bad_requests):
an over-long address 414, over-long headers 431, what cannot be parsed 400, unknown paths 404, so a
probe or a scraper reads one error shape whichever process it asks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from models.db import within
from service.bad_requests import HANDLER_ARGS, Runner, json_errors, limits
from service.metrics import refresh_bus_gauges

log = logging.getLogger("socialcare.health")
RUNTIME = web.AppKey("runtime", Any)
# a check (database, bus) that has not answered within this is "not ready", so /readyz answers 503
# before the health check gives up on it (docker-compose.yml's waits 5 s); the pings bound themselves
# tighter (models.db.PING_TIMEOUT_S, the bus's 3 s): this is the backstop for one that does not
CHECK_TIMEOUT_S = 4.0


def process_stages(rt: Any) -> list[str]:
    """The stages this process runs (none in the web and listener processes)."""
    pipeline = getattr(rt, "pipeline", None)
    if pipeline is None:
        return []
    return list(dict.fromkeys(w.stage.name for w in pipeline.workers))


async def _answers(check: Awaitable[bool]) -> bool:
    """One check's answer, False when it raises or takes longer than CHECK_TIMEOUT_S (then it is
    cancelled and left to finish its clean-up on its own, not in the probe's time)."""
    answer: list[bool] = []

    async def ask() -> None:
        answer.append(bool(await check))

    return await within(ask(), CHECK_TIMEOUT_S) and answer == [True]


async def readiness(rt: Any) -> dict[str, bool]:
    """The checks this process needs, each True or False (never raises), asked at once and each
    bounded: a database host that stops answering makes the process unready within seconds instead
    of hanging the probe (and every probe after it)."""
    database, bus = await asyncio.gather(_answers(rt.db.ping()), _answers(rt.bus.ping()))
    checks = {"database": database, "bus": bus}
    if "triage" in process_stages(rt):
        checks["models"] = rt.triager is not None
    return checks


def readiness_response(checks: dict[str, bool]) -> web.Response:
    ready = all(checks.values())
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    return readiness_response(await readiness(request.app[RUNTIME]))


async def metrics(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    await refresh_bus_gauges(rt.metrics, rt.bus, process_stages(rt))
    return web.Response(body=generate_latest(rt.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def worker_app(rt: Any) -> web.Application:
    """/healthz, /readyz and /metrics of a stage worker (no console, no sign-in: metrics hold no
    personal data; bind it to a private address). Refusals are JSON (see the module's docstring)."""
    app = web.Application(middlewares=[json_errors, limits], handler_args=HANDLER_ARGS)
    app[RUNTIME] = rt
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def start_worker_server(rt: Any, host: str, port: int) -> tuple[Runner, int]:
    """Serve :func:`worker_app` on ``host:port`` (port 0: a free one); returns the runner and the port."""
    runner = Runner(worker_app(rt), access_log=None)  # JSON for what the parser refuses, too
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound = runner.addresses[0][1]
    log.info("worker health and metrics on http://%s:%d (stages %s)", host, bound, ",".join(process_stages(rt)))
    return runner, bound
