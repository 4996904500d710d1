"""Operations: readiness checks what each process needs, workers serve their own health and
metrics, and /metrics carries real per-stage values after messages went through."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from console.app import create_app
from console.auth import create_api_token, create_user
from listener.replay import ReplayConnector
from service.bus import make_bus
from service.health import worker_app
from service.pipeline import submit
from service.runtime import Runtime
from service.seed import DEMO_MENTIONS, seed_demo

ROOT = Path(__file__).resolve().parents[2]


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Prometheus text → {(sample name, sorted labels): value}."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(parsed: dict, name: str, **labels: str) -> float:
    return parsed[(name, tuple(sorted(labels.items())))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def demo_mentions(n: int) -> list:
    mentions, _ = await ReplayConnector(DEMO_MENTIONS).poll_once(None)
    return mentions[:n]


# --- readiness --------------------------------------------------------------------------------

async def test_the_web_process_is_ready_without_models(services_settings):
    """`socialcare web` runs no stage: database and bus are all it needs (it used to answer 503)."""
    rt = await Runtime.open(services_settings, stages=[], with_connectors=False)
    try:
        assert rt.triager is None
        async with TestClient(TestServer(create_app(rt))) as client:
            r = await client.get("/readyz")
            assert r.status == 200, await r.text()
            assert await r.json() == {"ready": True, "checks": {"database": True, "bus": True}}
    finally:
        await rt.close()


async def test_the_web_process_is_not_ready_when_the_bus_is_away_and_metrics_still_answer(services_settings):
    settings = services_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    rt = await Runtime.open(settings, stages=[], with_connectors=False)
    try:
        async with TestClient(TestServer(create_app(rt))) as client:
            r = await client.get("/readyz")
            assert r.status == 503
            assert (await r.json())["checks"] == {"database": True, "bus": False}
        async with TestClient(TestServer(worker_app(rt))) as client:  # a scrape does not hang on the bus
            started = time.monotonic()
            r = await client.get("/metrics")
            assert r.status == 200 and time.monotonic() - started < 10
            assert "socialcare_stage_lag" in await r.text()
    finally:
        await rt.close()


async def test_a_triage_worker_needs_its_models(services_settings, triager):
    rt = await Runtime.open(services_settings, stages=["triage"], triager=triager, with_connectors=False)
    try:
        async with TestClient(TestServer(worker_app(rt))) as client:
            assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
            r = await client.get("/readyz")
            assert r.status == 200
            assert (await r.json())["checks"] == {"database": True, "bus": True, "models": True}
            rt.triager = None  # models gone: not ready
            r = await client.get("/readyz")
            assert r.status == 503 and (await r.json())["checks"]["models"] is False
    finally:
        await rt.close()


async def test_a_route_worker_does_not_ask_for_models(services_settings):
    rt = await Runtime.open(services_settings, stages=["route"], with_connectors=False)
    try:
        async with TestClient(TestServer(worker_app(rt))) as client:
            r = await client.get("/readyz")
            assert r.status == 200 and (await r.json())["checks"] == {"database": True, "bus": True}
    finally:
        await rt.close()


async def test_a_worker_exports_lag_and_pending_of_the_stages_it_reads_only(services_settings):
    """With every triage worker down, an ingest worker exported ``socialcare_stage_lag{stage="triage"}
    0`` (never read) while the bus held 7 for it, and no alert could fire; now it exports none of
    triage's, and the web process, which reads every stage's from the bus, says 7."""
    from prometheus_client import generate_latest

    from service.metrics import refresh_bus_gauges

    worker = await Runtime.open(services_settings, stages=["ingest"], with_connectors=False)
    web = await Runtime.open(services_settings, stages=[], with_connectors=False)
    try:
        await web.bus.ensure_group("triage", "triage")
        await web.bus.publish_many("triage", [(f"m:{i}", {"mention_id": i}) for i in range(7)])
        async with TestClient(TestServer(worker_app(worker))) as client:
            parsed = samples(await (await client.get("/metrics")).text())
        for family in ("socialcare_stage_lag", "socialcare_stage_pending"):
            assert value(parsed, family, stage="ingest") == 0
            assert [k for k in parsed if k[0] == family] == [(family, (("stage", "ingest"),))]
        await refresh_bus_gauges(web.metrics, web.bus)  # as the console's /metrics does
        parsed = samples(generate_latest(web.metrics.registry).decode())
        assert value(parsed, "socialcare_stage_lag", stage="triage") == 7
        assert value(parsed, "socialcare_stage_pending", stage="triage") == 0
        assert value(parsed, "socialcare_stage_lag", stage="act") == 0
    finally:
        await worker.close()
        await web.close()


async def test_readiness_answers_within_seconds_while_the_database_host_is_frozen(tmp_path, postgres_url):
    """PostgreSQL's host stops answering without refusing (a black hole, played by a proxy the test
    controls): a worker's /readyz and the web process's answer 503 within seconds, /healthz 200 at
    once, instead of hanging until the kernel gives up on the connection; then ready again."""
    from console.webhooks_out import SENDER
    from service.settings import load_settings
    from tests.tcp_proxy import TcpProxy

    proxy, url = await TcpProxy.before(postgres_url)
    settings = load_settings(database_url=url, bus="inprocess", var_dir=tmp_path / "var", demo=False,
                             dry_run=True, bus_block_ms=50, cookie_secure=False)
    rt = await Runtime.open(settings, stages=["route"], with_connectors=False)
    patience = aiohttp.ClientTimeout(total=30)  # without the bounds: a timeout here, not a hung test
    try:
        async with TestClient(TestServer(worker_app(rt))) as worker, TestClient(TestServer(create_app(rt))) as web:
            await web.server.app[SENDER].stop()
            for client in (worker, web):
                assert (await client.get("/readyz")).status == 200
            await proxy.set("hang")
            for client in (worker, web):
                started = time.monotonic()
                r = await client.get("/readyz", timeout=patience)
                assert r.status == 503 and (await r.json())["checks"] == {"database": False, "bus": True}
                assert time.monotonic() - started < 5, time.monotonic() - started
                started = time.monotonic()
                assert (await client.get("/healthz", timeout=patience)).status == 200
                assert time.monotonic() - started < 1
            await proxy.set("up")
            for client in (worker, web):
                r = await client.get("/readyz", timeout=patience)
                assert r.status == 200, await r.text()
    finally:
        await proxy.set("up")
        await rt.close()
        await proxy.close()


async def test_a_check_that_never_answers_is_not_ready_within_its_bound(monkeypatch):
    """The backstop for a ping that does not bound itself: the checks are asked at once, each for
    CHECK_TIMEOUT_S at most."""
    from types import SimpleNamespace

    from service import health

    monkeypatch.setattr(health, "CHECK_TIMEOUT_S", 0.2, raising=False)

    async def never() -> bool:
        await asyncio.Event().wait()
        return True

    async def fine() -> bool:
        return True

    async def broken() -> bool:
        raise ConnectionResetError

    rt = SimpleNamespace(db=SimpleNamespace(ping=never), bus=SimpleNamespace(ping=never), pipeline=None)
    started = time.monotonic()
    assert await asyncio.wait_for(health.readiness(rt), 5) == {"database": False, "bus": False}
    assert time.monotonic() - started < 1  # both at once, not one after the other
    rt = SimpleNamespace(db=SimpleNamespace(ping=fine), bus=SimpleNamespace(ping=broken), pipeline=None)
    assert await asyncio.wait_for(health.readiness(rt), 5) == {"database": True, "bus": False}


# --- a worker process's own server --------------------------------------------------------------

async def test_a_worker_process_serves_its_stage_counters(services_settings):
    """`socialcare worker --stage ingest` with SOCIALCARE_WORKER_METRICS_PORT: /readyz and /metrics
    of that process show what it handled."""
    s = services_settings
    port = free_port()
    env = {**os.environ, "SOCIALCARE_DATABASE_URL": s.database_url, "SOCIALCARE_BUS": "redis",
           "SOCIALCARE_REDIS_URL": s.redis_url, "SOCIALCARE_BUS_PREFIX": s.bus_prefix, "SOCIALCARE_DEMO": "false",
           "SOCIALCARE_VAR_DIR": str(s.var_dir), "SOCIALCARE_LOG_LEVEL": "WARNING",
           "SOCIALCARE_WORKER_METRICS_PORT": str(port)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "service.cli", "worker", "--stage", "ingest",
                                                cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    bus = make_bus(s)
    await bus.start()
    try:
        mentions = await demo_mentions(12)
        await submit(bus, mentions)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        parsed: dict = {}
        async with aiohttp.ClientSession() as http:
            while True:
                assert proc.returncode is None, (await proc.stderr.read()).decode()[-2000:]
                assert time.monotonic() < deadline, f"worker did not handle the mentions: {parsed}"
                try:
                    async with http.get(f"{base}/metrics") as r:
                        parsed = samples(await r.text())
                except aiohttp.ClientError:
                    await asyncio.sleep(0.3)
                    continue
                if value(parsed, "socialcare_stage_messages_total", stage="ingest") >= len(mentions):
                    break
                await asyncio.sleep(0.3)
            assert value(parsed, "socialcare_stage_messages_total", stage="ingest") == len(mentions)
            assert value(parsed, "socialcare_stage_messages_total", stage="triage") == 0  # not this process's
            assert value(parsed, "socialcare_stage_batch_seconds_count", stage="ingest") >= 1
            assert value(parsed, "socialcare_stage_errors_total", stage="ingest") == 0
            assert ("socialcare_stage_lag", (("stage", "ingest"),)) in parsed
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 200 and (await r.json())["checks"] == {"database": True, "bus": True}
        # the ingest stage published one triage message per mention: nobody consumes them here
        assert await bus.lag("triage", "triage") == len(mentions)
    finally:
        await bus.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            stderr = (await asyncio.wait_for(proc.communicate(), 20))[1]
        except TimeoutError:
            proc.kill()
            raise
    assert proc.returncode == 0, stderr.decode()[-2000:]  # SIGTERM: a graceful exit


def test_compose_workers_are_health_checked_on_their_metrics_port():
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name in ("ingest", "triage", "route", "act"):
        svc = doc["services"][name]
        port = svc["environment"]["SOCIALCARE_WORKER_METRICS_PORT"]
        assert svc["command"][:2] == ["socialcare", "worker"]
        assert f"127.0.0.1:{port}/readyz" in " ".join(svc["healthcheck"]["test"])
    assert "8080/readyz" in " ".join(doc["services"]["web"]["healthcheck"]["test"])


# --- /metrics after real work ----------------------------------------------------------------------

async def test_metrics_carry_real_values_after_processing(embedded_settings, triager):
    """Mentions through all four stages plus one poison message: throughput, errors, dead letters
    (read from the dead-letter stream), triage latency and lag all show what happened."""
    settings = embedded_settings.model_copy(update={"bus_max_deliveries": 2})
    rt = await Runtime.open(settings, triager=triager, with_connectors=False)
    try:
        await seed_demo(rt.db)
        async with rt.db.session() as s:
            admin = await create_user(s, "prometheus", "scraper password", "admin")
            token = await create_api_token(s, admin, "scraper", ["metrics"])
            await s.commit()
        await rt.start()
        mentions = await demo_mentions(20)
        await rt.submit(mentions)
        await rt.bus.publish("ingest", {"not": "a mention"}, key="poison")
        await rt.pipeline.wait_idle(timeout=120)
        await rt.pipeline.stop()
        await rt.bus.publish_many("route", [(f"later:{i}", {"mention_id": 10**9 + i}) for i in range(3)])
        async with TestClient(TestServer(create_app(rt))) as client:
            r = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
            assert r.status == 200
            parsed = samples(await r.text())
    finally:
        await rt.close()
    for stage in ("ingest", "triage", "route", "act"):
        assert value(parsed, "socialcare_stage_messages_total", stage=stage) >= len(mentions), stage
        assert value(parsed, "socialcare_stage_batch_seconds_count", stage=stage) >= 1, stage
    assert value(parsed, "socialcare_stage_errors_total", stage="ingest") == 2  # two attempts of the poison
    assert value(parsed, "socialcare_stage_errors_total", stage="act") == 0
    assert value(parsed, "socialcare_dead_letter_stream_messages", stage="ingest") == 1
    assert value(parsed, "socialcare_dead_letter_stream_messages", stage="triage") == 0
    assert value(parsed, "socialcare_stage_lag", stage="route") == 3
    assert value(parsed, "socialcare_stage_lag", stage="ingest") == 0
    assert value(parsed, "socialcare_stage_pending", stage="ingest") == 0
    texts = value(parsed, "socialcare_triage_texts_total")
    assert texts == value(parsed, "socialcare_triage_text_seconds_count") >= len(mentions)
    assert 1 <= value(parsed, "socialcare_triage_batch_seconds_count") <= texts
    assert value(parsed, "socialcare_triage_batch_seconds_sum") > 0
    assert value(parsed, "socialcare_triage_text_seconds_sum") == pytest.approx(
        value(parsed, "socialcare_triage_batch_seconds_sum"), rel=1e-6)
    assert value(parsed, "socialcare_ingest_to_routed_seconds_count") >= len(mentions)
