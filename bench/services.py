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
import uuid
from datetime import timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("ingest", "triage", "route", "act")


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def _consumers_ready(client, prefix: str, per_stage: int) -> bool:  # noqa: ANN001
    """Every worker has joined its group (it reads only after its models are loaded and warm)."""
    for stage in STAGES:
        try:
            groups = await client.xinfo_groups(f"{prefix}:{stage}")
        except Exception:  # noqa: BLE001 - the stream does not exist yet
            return False
        group = next((g for g in groups if g["name"] in (stage, stage.encode())), None)
        if group is None or int(group["consumers"]) < per_stage:
            return False
    return True


async def run_services(args, mentions: list, settings, db_url: str) -> dict:  # noqa: ANN001
    import redis.asyncio as redis
    from sqlalchemy import func, select

    from models import Mention, RouteDecision
    from models.db import Database
    from service.bus import make_bus
    from service.pipeline import submit
    from service.seed import seed_demo

    db = Database(db_url)
    await db.upgrade()
    await seed_demo(db)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SOCIALCARE_DATABASE_URL": db_url, "SOCIALCARE_BUS": "redis",
           "SOCIALCARE_REDIS_URL": settings.redis_url, "SOCIALCARE_BUS_PREFIX": settings.bus_prefix,
           "SOCIALCARE_TRIAGE_MODE": settings.triage_mode, "SOCIALCARE_ENCODER_BACKEND": settings.encoder_backend,
           "SOCIALCARE_DRY_RUN": "true", "SOCIALCARE_DEMO": "false", "SOCIALCARE_LOG_LEVEL": "WARNING",
           "SOCIALCARE_VAR_DIR": str(settings.var_dir), "SOCIALCARE_BUS_CLAIM_IDLE_MS": "60000"}
    workers = [subprocess.Popen([sys.executable, "-m", "service.cli", "worker", "--stage", stage], env=env,
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for stage in STAGES for _ in range(args.workers)]
    client = redis.Redis.from_url(settings.redis_url)
    bus = make_bus(settings)
    await bus.start()
    peaks: list[float] = []
    try:
        deadline = time.monotonic() + 300
        while not await _consumers_ready(client, settings.bus_prefix, args.workers):
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
        await client.aclose()
        await db.close()
    return {"elapsed": elapsed, "latencies": latencies, "stored": stored, "distinct": distinct,
            "routed": len(rows), "expected": expected, "peak_rss_mb": max(peaks or [0.0])}
