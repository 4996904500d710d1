"""`socialcare worker`: stage workers on the shared bus, scaled out across processes and machines,
each with an optional health + metrics server (``SOCIALCARE_WORKER_METRICS_PORT``)."""

from __future__ import annotations

import asyncio
import logging

import click

from service.cli.lifecycle import abandoned_work, stop_on_signals
from service.stages import STAGES

log = logging.getLogger("socialcare.worker")


async def serve_worker(settings, stages: list[str], concurrency: int, stop: asyncio.Event | None = None) -> None:  # noqa: ANN001
    """Run the stages until SIGINT/SIGTERM (or ``stop``); the batch in hand is finished first, unless
    a second signal cuts that short (:mod:`service.cli.lifecycle`)."""
    from console import events
    from service.health import start_worker_server
    from service.runtime import Runtime

    rt = await Runtime.open(settings, stages=stages, workers=concurrency)
    stop = stop or asyncio.Event()
    hub = events.make_hub(settings, tail=False)  # live-queue events for the separate web process
    events.attach(rt, hub)
    runner = None
    with stop_on_signals(stop, lambda: abandoned_work(rt)):
        try:
            await rt.start()
            if settings.worker_metrics_port is not None:
                runner, _port = await start_worker_server(rt, settings.worker_metrics_host,
                                                          settings.worker_metrics_port)
            await stop.wait()
            log.info("shutting down: finishing in-flight work")
        finally:
            if runner is not None:
                await runner.cleanup()  # /readyz goes first: the orchestrator sees the worker leave
            await rt.close()  # the batch in hand is finished and acked
            await hub.close()


@click.command()
@click.option("--stage", "stages", multiple=True, type=click.Choice(STAGES), required=True,
              help="Stage to run (repeatable).")
@click.option("--concurrency", type=click.IntRange(1, 64), default=1, show_default=True, help="Consumers per stage in this process.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve /healthz, /readyz and /metrics on this port (default: SOCIALCARE_WORKER_METRICS_PORT; "
                   "0 picks a free port).")
@click.pass_obj
def worker(settings, stages: tuple[str, ...], concurrency: int, metrics_port: int | None) -> None:  # noqa: ANN001
    """Run stage workers only (production: Redis Streams bus, scaled across machines)."""
    if settings.bus != "redis":
        raise click.ClickException("workers need a shared bus: set SOCIALCARE_BUS=redis")
    if metrics_port is not None:
        settings.worker_metrics_port = metrics_port
    asyncio.run(serve_worker(settings, list(stages), concurrency))
