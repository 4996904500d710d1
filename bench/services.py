"""`bench/pipeline.py --mode services`: the production layout on one machine. PostgreSQL and Redis
Streams, and `socialcare worker` processes (two per stage by default), as they would run scaled out;
this process only publishes the replayed mentions and watches the database.

Latency is ingest → routed decision as in embedded mode: the decision row's time minus the time
its mention was published. Peak RSS is the largest worker's (each stage runs in its own processes).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import timezone
from pathlib import Path

from service.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]


def worker_env(settings, **overrides: object) -> dict[str, str]:  # noqa: ANN001
    """The environment of a `socialcare worker` on the settings' database and Redis bus (dry run, no
    demo); ``overrides`` are further settings by field name (``bus_batch_size=200``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SOCIALCARE_DATABASE_URL": settings.database_url,
           "SOCIALCARE_BUS": "redis", "SOCIALCARE_REDIS_URL": settings.redis_url,
           "SOCIALCARE_BUS_PREFIX": settings.bus_prefix, "SOCIALCARE_BUS_CLAIM_IDLE_MS": str(settings.bus_claim_idle_ms),
           "SOCIALCARE_TRIAGE_MODE": settings.triage_mode, "SOCIALCARE_ENCODER_BACKEND": settings.encoder_backend,
           "SOCIALCARE_DRY_RUN": "true", "SOCIALCARE_DEMO": "false", "SOCIALCARE_LOG_LEVEL": "WARNING",
           "SOCIALCARE_VAR_DIR": str(settings.var_dir)}
    env.update({f"SOCIALCARE_{name.upper()}": str(value) for name, value in overrides.items()})
    return env


def start_worker(stage: str, env: dict[str, str], metrics_port: int | None = None) -> subprocess.Popen:
    port = ["--metrics-port", str(metrics_port)] if metrics_port is not None else []
    return subprocess.Popen([sys.executable, "-m", "service.cli", "worker", "--stage", stage, *port], env=env,
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _all_ready(ports: list[int]) -> bool:
    """Every worker's /readyz answers 200 (database, bus and, for triage, the warm models)."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        for port in ports:
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    if resp.status != 200:
                        return False
            except (aiohttp.ClientError, TimeoutError):
                return False
    return True


async def run_services(args, mentions: list, settings) -> dict:  # noqa: ANN001
    from sqlalchemy import func, select

    from models import Mention, RouteDecision
    from models.db import Database
    from service.bus import make_bus
    from service.pipeline import submit
    from service.seed import seed_demo

    db = Database(settings.database_url)
    await db.upgrade()
    await seed_demo(db)
    env = worker_env(settings)
    ports = [_free_port() for _ in range(len(STAGES) * args.workers)]
    workers = [start_worker(stage, env, ports[i])
               for i, stage in enumerate(s for s in STAGES for _ in range(args.workers))]
    bus = make_bus(settings)
    await bus.start()
    peaks: list[float] = []
    try:
        deadline = time.monotonic() + 300
        while not await _all_ready(ports):
            dead = [w for w in workers if w.poll() is not None]
            if dead:
                raise SystemExit(f"a worker exited: {dead[0].stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise SystemExit("workers not ready after 300 s")
            await asyncio.sleep(0.2)
        published: dict[str, float] = {}
        started = time.time()
        if args.rate > 0:
            for i, m in enumerate(mentions):
                await asyncio.sleep(max(0.0, started + i / args.rate - time.time()))
                published[m.external_id] = time.time()
                await submit(bus, [m])
        else:
            for i in range(0, len(mentions), 500):
                chunk = mentions[i:i + 500]
                now = time.time()
                published.update((m.external_id, now) for m in chunk)
                await submit(bus, chunk)
        expected = len({m.external_id for m in mentions})
        deadline = time.monotonic() + args.timeout
        while True:
            async with db.session() as s:
                acted = await s.scalar(select(func.count()).select_from(RouteDecision)
                                       .where(RouteDecision.acted_at.is_not(None)))
            if acted >= expected:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"only {acted} of {expected} mentions acted on after {args.timeout} s")
            await asyncio.sleep(0.1)
        elapsed = time.time() - started
        async with db.session() as s:
            rows = (await s.execute(select(Mention.external_id, RouteDecision.created_at)
                                    .join(RouteDecision, RouteDecision.mention_id == Mention.id))).all()
            stored = await s.scalar(select(func.count()).select_from(Mention))
            distinct = await s.scalar(select(func.count(func.distinct(Mention.external_id))))
        latencies = [(at.replace(tzinfo=at.tzinfo or timezone.utc).timestamp() - published[ext]) * 1000
                     for ext, at in rows if ext in published]
        peaks = [_peak_rss_mb(w.pid) for w in workers]

    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
        await bus.close()
        await db.close()
    return {"elapsed": elapsed, "latencies": latencies, "stored": stored, "distinct": distinct,
            "routed": len(rows), "expected": expected, "peak_rss_mb": max(peaks or [0.0])}
