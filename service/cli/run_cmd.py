"""`socialcare run` (everything in one process), `web` and `listen` (production processes).

Only `run` and `listen` poll the connectors; `web` (and the workers, see ``worker_cmd``) build them
for outbound replies and moderation actions only."""

from __future__ import annotations

import asyncio
import logging

import click
from aiohttp import web

from service.cli.lifecycle import abandoned_work, stop_on_signals
from service.stages import STAGES

log = logging.getLogger("socialcare.run")


async def _serve(settings, *, stages, workers: int, web_port: int | None, demo: bool,  # noqa: ANN001
                 listen: bool = False, stop: asyncio.Event | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop``), then shut down gracefully (see ``Runtime.close``); a
    second signal cuts that short (:mod:`service.cli.lifecycle`)."""
    from console.app import create_app
    from service.bad_requests import Runner
    from service.runtime import Runtime, write_ingest_token
    from service.seed import DEMO_MENTIONS, seed_demo

    rt = await Runtime.open(settings, stages=stages, workers=workers, listen=listen)
    stop = stop or asyncio.Event()
    runner = None
    with stop_on_signals(stop, lambda: abandoned_work(rt)):
        try:
            if demo:
                counts = await seed_demo(rt.db)
                log.info("demo seeded: %s", counts)
            await rt.start()
            if web_port is not None:
                rt.ingest_token = write_ingest_token(settings.var_dir)
                demo_login = None  # the account of a local demo; the login page shows its password only
                # to a browser on this machine (console.login.local_demo): a reverse proxy in front of
                # a loopback bind is loopback too, so the bind address alone cannot tell
                if demo and settings.host in ("127.0.0.1", "localhost", "::1"):
                    from console.login import ensure_demo_account

                    demo_login = await ensure_demo_account(rt.db, settings.var_dir)
                runner = Runner(create_app(rt, demo_login), access_log=None)  # JSON for unparsable requests
                await runner.setup()
                await web.TCPSite(runner, settings.host, web_port).start()
                log.info("console on http://%s:%d", settings.host, web_port)
            if demo:
                rt.tasks.append(asyncio.create_task(rt.feed_demo(DEMO_MENTIONS, settings.demo_speed)))
            await stop.wait()
            log.info("shutting down: finishing in-flight work")
        finally:
            if runner is not None:
                await runner.cleanup()  # no new webhook or console request from here on
            await rt.close()  # connectors stop, in-process queues drain, then the stages stop


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Console port (default: settings, 8080).")
@click.option("--host", default=None, help="Bind address (default: settings, 127.0.0.1).")
@click.option("--demo/--no-demo", default=None, help="Stream the bundled demo (default: on when no connector is configured).")
@click.pass_obj
def run(settings, port: int | None, host: str | None, demo: bool | None) -> None:  # noqa: ANN001
    """Run the whole service in one process: all stages, connectors and the web console."""
    if host:
        settings.host = host
    port = port or settings.port
    if demo is None:
        demo = settings.demo and not (settings.x_enabled or settings.reddit_enabled or settings.discourse_enabled)
    if demo:
        from service.seed import demo_settings

        settings = demo_settings(settings)
    asyncio.run(_serve(settings, stages=STAGES, workers=1, web_port=port, demo=demo, listen=True))


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port (default: settings, 8080).")
@click.pass_obj
def web_cmd(settings, port: int | None) -> None:  # noqa: ANN001
    """Run the web console and API only (production; stages run as workers)."""
    if settings.bus != "redis":
        raise click.ClickException("a separate web process needs a shared bus: set SOCIALCARE_BUS=redis")
    asyncio.run(_serve(settings, stages=[], workers=0, web_port=port or settings.port, demo=False))


web_cmd.name = "web"


@click.command()
@click.pass_obj
def listen(settings) -> None:  # noqa: ANN001
    """Run the configured connectors only, publishing to the shared bus (production)."""
    if settings.bus != "redis":
        raise click.ClickException("a separate listener process needs a shared bus: set SOCIALCARE_BUS=redis")
    if not (settings.x_enabled or settings.reddit_enabled or settings.discourse_enabled):
        raise click.ClickException("no connector is configured (see `socialcare connectors check`)")
    asyncio.run(_serve(settings, stages=[], workers=0, web_port=None, demo=False, listen=True))
