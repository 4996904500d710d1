"""Dead letters counted by topic without reading them: ``/metrics`` and ``deadletter list`` ask the
bus's counts (:meth:`~service.bus.base.Bus.dead_letter_counts`), kept beside the Redis stream by the
scripts that write it, so a scrape costs a few commands however many letters there are (it took 7 to
16 s with 30,000), and a listing reads the letters it shows only. Measured in Redis commands and
letters decoded, not in seconds."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest
from click.testing import CliRunner
from redis.asyncio.connection import Connection

from service.bus import redis_deadletters, redis_streams
from service.cli import main
from service.metrics import Metrics, refresh_bus_gauges
from tests.redis_keys import delete_redis_keys

MANY = 1200  # more than two pages (service.bus.redis_common.CHUNK) of the dead-letter stream


async def bury(bus, topic: str, n: int, start: int = 0) -> None:
    """Dead-letter ``n`` messages of ``topic`` as a failing stage does (the bus buries at attempt 1)."""
    await bus.ensure_group(topic, topic)
    await bus.publish_many(topic, [(f"{topic}:{i}", {"i": i, "mention": {"platform": "x", "external_id": str(i)}})
                                   for i in range(start, start + n)])
    for env in await bus.read(topic, topic, "c", n, 0):
        assert await bus.fail(topic, topic, env, "RuntimeError: broke")


@pytest.fixture
def commands(monkeypatch):
    """Every Redis command this process sends from here on, as (NAME, args...)."""
    sent: list[tuple] = []
    pack = Connection.pack_command

    def recording(self, *args):
        sent.append(tuple(a.decode() if isinstance(a, bytes) else a for a in args))
        return pack(self, *args)

    monkeypatch.setattr(Connection, "pack_command", recording)
    return sent


@pytest.fixture
def decoded(monkeypatch):
    """How many dead letters the Redis bus decodes (each one a read and a JSON parse)."""
    calls: list[str] = []
    real = redis_streams.decode_dead_letter

    def counting(entry_id, raw):
        calls.append(entry_id)
        return real(entry_id, raw)

    monkeypatch.setattr(redis_streams, "decode_dead_letter", counting)
    monkeypatch.setattr(redis_deadletters, "decode_dead_letter", counting)
    return calls


def reads_of(sent: list[tuple], stream: str) -> list[tuple]:
    return [c for c in sent if str(c[0]).upper() in ("XRANGE", "XREVRANGE") and c[1] == stream]


@pytest.fixture
async def redis_bus(redis_url, bus_prefix):
    bus = redis_streams.RedisStreamsBus(redis_url, prefix=bus_prefix, max_deliveries=1)
    await bus.start()
    yield bus
    await bus.close()
    delete_redis_keys(redis_url, bus_prefix)


async def test_a_scrape_counts_dead_letters_with_a_few_commands_however_many_there_are(redis_bus, commands, decoded):
    await bury(redis_bus, "ingest", 3)
    metrics = Metrics()
    commands.clear()
    await refresh_bus_gauges(metrics, redis_bus, [])
    few = len(commands)
    await bury(redis_bus, "act", MANY)
    commands.clear()
    decoded.clear()
    await refresh_bus_gauges(metrics, redis_bus, [])
    assert reads_of(commands, redis_bus.dead_stream) == [] and decoded == []
    assert len(commands) == few <= 6, commands
    gauge = metrics.dead_letter_stream
    assert (gauge.labels("ingest")._value.get(), gauge.labels("act")._value.get(),
            gauge.labels("triage")._value.get()) == (3, MANY, 0)


async def test_the_counts_follow_every_write_and_mend_themselves_when_the_stream_was_changed_by_hand(redis_bus):
    bus = redis_bus
    await bury(bus, "ingest", 4)
    await bury(bus, "route", 2)
    letters = await bus.dead_letters(None, 100)

    async def truth() -> dict[str, int]:
        return dict(Counter(d.topic for d in await bus.dead_letters(None, 10**6)))

    assert await bus.dead_letter_counts() == await truth() == {"ingest": 4, "route": 2}
    assert await bus.retry_dead_letter(letters[0].id)
    assert await bus.delete_dead_letters([letters[4].id, "1-1"]) == 1
    await bus.remove_content({("x", "2")})  # rewrites the ingest letter of post 2 under a new id
    assert await bus.dead_letter_counts() == await truth() == {"ingest": 3, "route": 1}
    await bus.client.xdel(bus.dead_stream, letters[5].id)  # by hand: the counts are rebuilt
    assert await bus.dead_letter_counts() == await truth() == {"ingest": 3}
    # letters buried by a release that kept no counts: counted once on first use
    await bus.client.delete(f"{bus.dead_stream}:topic-of", f"{bus.dead_stream}:per-topic")
    assert await bus.dead_letter_counts() == {"ingest": 3}


async def test_both_buses_count_what_they_list(make_bus):
    bus = await make_bus(1)
    await bury(bus, "triage", 3)
    await bury(bus, "act", 1)
    assert await bus.dead_letter_counts() == {"triage": 3, "act": 1}
    first = (await bus.dead_letters("triage", 1))[0]
    assert await bus.delete_dead_letters([first.id]) == 1
    assert await bus.dead_letter_counts() == {"triage": 2, "act": 1}
    assert [d.key for d in await bus.dead_letters("triage", 1)] == ["triage:1"]


def test_list_with_a_limit_reads_only_the_letters_it_shows(redis_url, bus_prefix, tmp_path, commands, decoded):
    env = {"SOCIALCARE_BUS": "redis", "SOCIALCARE_REDIS_URL": redis_url, "SOCIALCARE_BUS_PREFIX": bus_prefix,
           "SOCIALCARE_VAR_DIR": str(tmp_path / "var"), "SOCIALCARE_CONFIG": None,
           "SOCIALCARE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"}

    async def fill() -> str:
        bus = redis_streams.RedisStreamsBus(redis_url, prefix=bus_prefix, max_deliveries=1)
        try:
            await bury(bus, "act", MANY)
            await bury(bus, "triage", 2)
            return bus.dead_stream
        finally:
            await bus.close()

    try:
        stream = asyncio.run(fill())
        commands.clear()
        decoded.clear()
        result = CliRunner().invoke(main, ["deadletter", "list", "--json", "--limit", "2"], env=env,
                                    catch_exceptions=False)
        assert [json.loads(line)["key"] for line in result.stdout.splitlines()] == ["act:0", "act:1"]
        assert f"… and {MANY} more (of {MANY + 2})" in result.stderr
        assert len(decoded) == 2 and sum(int(c[c.index("COUNT") + 1]) for c in reads_of(commands, stream)) == 2
        decoded.clear()
        result = CliRunner().invoke(main, ["deadletter", "list", "--json", "--topic", "triage", "--limit", "1"],
                                    env=env, catch_exceptions=False)
        assert [json.loads(line)["key"] for line in result.stdout.splitlines()] == ["triage:0"]
        assert "… and 1 more (of 2 on topic triage)" in result.stderr
        assert len(decoded) == 1  # the other topic's letters are passed over by their topic field, undecoded
    finally:
        delete_redis_keys(redis_url, bus_prefix)
