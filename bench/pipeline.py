"""End-to-end pipeline benchmark: replay real inbound tweets through ingest → triage → route → act.

Prints one JSON object: mode, n, mentions_per_s, encoder_texts_per_s (the bare encoder as shipped,
torch fp32, on the same texts in the same run), ratio_to_encoder, the same for the encoder backend
the stage runs (backend_encoder_texts_per_s, ratio_to_backend_encoder), p50/p95/p99 ingest → routed-decision latency (ms),
peak_rss_mb, lost and duplicated, and rejected (corpus rows the replay left out, the first reasons on
stderr). With ``--n`` above the corpus's size the corpus is replayed again (fresh ids): embedded mode
then also reports each pass's mentions/s (``pass_mentions_per_s``), a repeated pass meeting the triage and sentence caches the first one filled.

    .venv/bin/python bench/pipeline.py --mode embedded --triage cascade --n 2000
    .venv/bin/python bench/pipeline.py --mode embedded --triage transformer --n 1000
    .venv/bin/python bench/pipeline.py --mode embedded --triage cascade --n 600 --rate 20   # latency at 20/s
    .venv/bin/python bench/pipeline.py --mode services --n 2000   # PostgreSQL + Redis Streams, 2 worker processes/stage
    .venv/bin/python bench/pipeline.py --mode embedded --n 30192  # the corpus twice: the second pass hits the caches
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    backend_encoder_texts_per_s,
    bare_encoder_texts_per_s,
    corpus_rejected,
    corpus_size,
    load_corpus,
    percentile,
)


async def _pg_database(admin_dsn: str) -> tuple[str, str]:
    import asyncpg

    name = f"sc_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return name, admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + "/" + name


async def _drop_pg(admin_dsn: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


async def _run_embedded(args: argparse.Namespace, mentions: list, settings) -> dict:  # noqa: ANN001
    """Everything in this process (`socialcare run`): SQLite and the in-process bus. Same keys as
    :func:`bench.services.run_services`."""
    from sqlalchemy import func, select

    from models import Mention, RouteDecision
    from service.runtime import Runtime
    from service.seed import seed_demo
    from triage import build_triager

    triager = await asyncio.to_thread(build_triager, settings)
    passes: list[float] = []
    rt = await Runtime.open(settings, triager=triager, workers=1, with_connectors=False)
    try:
        await seed_demo(rt.db)
        await rt.start()
        started = time.perf_counter()
        if args.rate > 0:
            for i, m in enumerate(mentions):
                due = started + i / args.rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                await rt.submit([m])
        else:  # pass by pass over the corpus: a repeated pass meets the caches an earlier one filled
            for start in range(0, len(mentions), args.corpus_size):
                began = time.perf_counter()
                chunk = mentions[start:start + args.corpus_size]
                for i in range(0, len(chunk), 500):
                    await rt.submit(chunk[i:i + 500])
                await rt.pipeline.wait_idle(timeout=args.timeout)
                passes.append(round(len(chunk) / (time.perf_counter() - began), 1))
        await rt.pipeline.wait_idle(timeout=args.timeout)
        elapsed = time.perf_counter() - started
        latencies = [x for w in rt.pipeline.workers if w.stage.name == "route" for x in w.stage.latencies_ms]
        async with rt.db.session() as s:
            stored = await s.scalar(select(func.count()).select_from(Mention))
            distinct = await s.scalar(select(func.count(func.distinct(Mention.external_id))))
            routed = await s.scalar(select(func.count()).select_from(RouteDecision))
    finally:
        await rt.close()
    # The service's peak, read before the bare encoder is loaded for the comparison (that second copy
    # of the model belongs to the measurement, not to the service).
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"elapsed": elapsed, "latencies": latencies, "stored": stored, "distinct": distinct, "routed": routed,
            "expected": len({m.external_id for m in mentions}), "peak_rss_mb": peak_rss_mb,
            **({"pass_mentions_per_s": passes} if len(passes) > 1 else {})}


async def run(args: argparse.Namespace) -> dict:
    from service.settings import load_settings

    mentions = await asyncio.to_thread(load_corpus, args.n, args.corpus)
    args.corpus_size = await asyncio.to_thread(corpus_size, args.corpus)
    tmp = tempfile.mkdtemp(prefix="sc-bench-")
    overrides = dict(triage_mode=args.triage, demo=False, dry_run=True, var_dir=Path(tmp),
                     encoder_backend=args.encoder_backend)
    pg_name = None
    if args.mode == "embedded":
        overrides.update(database_url=f"sqlite+aiosqlite:///{tmp}/bench.db", bus="inprocess")
        workers = 1
    else:
        pg_name, url = await _pg_database(args.postgres)
        overrides.update(database_url=url, bus="redis", redis_url=args.redis,
                         bus_prefix=f"scbench-{uuid.uuid4().hex[:8]}", bus_claim_idle_ms=60_000)
        workers = args.workers
    settings = load_settings(**overrides)
    try:
        if args.mode == "services":  # worker processes, as production runs them (bench/services.py)
            from bench.services import run_services

            res = await run_services(args, mentions, settings)
        else:
            res = await _run_embedded(args, mentions, settings)
    finally:
        if pg_name:
            await _drop_pg(args.postgres, pg_name)
        if args.mode == "services":
            import redis.asyncio as redis

            client = redis.Redis.from_url(args.redis)
            keys = [k async for k in client.scan_iter(f"{settings.bus_prefix}:*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()
    texts = [m.text for m in mentions[: min(len(mentions), args.encoder_sample)]]
    encoder = bare_encoder_texts_per_s(texts)
    backend = backend_encoder_texts_per_s(texts, settings.encoder_backend, fp32=encoder)
    latencies, expected, routed = res["latencies"], res["expected"], res["routed"]
    rate = len(mentions) / res["elapsed"]
    return {
        "mode": args.mode, "triage": args.triage, "n": len(mentions), "workers_per_stage": workers,
        "offered_rate": args.rate or None, "mentions_per_s": round(rate, 1),
        "encoder_texts_per_s": round(encoder, 1), "ratio_to_encoder": round(rate / encoder, 3),
        "encoder_backend": settings.encoder_backend, "backend_encoder_texts_per_s": round(backend, 1),
        "ratio_to_backend_encoder": round(rate / backend, 3),
        "p50_ms": round(percentile(latencies, 50), 1), "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "peak_rss_mb": round(res["peak_rss_mb"], 1),
        "lost": expected - min(routed, expected),
        "duplicated": (res["stored"] - res["distinct"]) + max(0, routed - expected),
        "elapsed_s": round(res["elapsed"], 2),
        "rejected": corpus_rejected(args.corpus),  # corpus rows left out (their reasons on stderr)
        **{k: res[k] for k in ("pass_mentions_per_s",) if k in res},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["embedded", "services"], default="embedded")
    p.add_argument("--triage", choices=["transformer", "cascade"], default="cascade")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--corpus", type=Path, default=None,
                   help="replayed file (default: the Customer Support on Twitter sample in ../shared/data/twcs)")
    p.add_argument("--rate", type=float, default=0.0, help="offered mentions/s (0: as fast as possible)")
    p.add_argument("--encoder-sample", type=int, default=1000, help="texts for the bare-encoder measurement")
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--encoder-backend", choices=["onnx-int8", "torch"], default="onnx-int8")
    p.add_argument("--workers", type=int, default=2, help="services mode: worker processes per stage")
    p.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = p.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
