"""Shared by the service tests: the privacy tests' database, migrated, on SQLite and on PostgreSQL,
their world of people on it, and their buses, in-process and on a real Redis."""

from __future__ import annotations

import pytest
from privacy_support import World, delete_redis_keys, settings_for


@pytest.fixture
def db(any_db):
    """A migrated, empty database: SQLite, then PostgreSQL (erasure and its races differ on each)."""
    return any_db


@pytest.fixture
def world(db, tmp_path):
    return World(db, settings_for(tmp_path, db.url))


@pytest.fixture(params=["inprocess", "redis"])
async def make_bus(request):
    """Builds a started bus, in-process then on a real Redis, dead-lettering after the deliveries a
    test asks for; closed, and its Redis keys deleted, after the test."""
    made = []
    if request.param == "redis":
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("bus_prefix")

    async def make(max_deliveries: int):
        if request.param == "redis":
            from service.bus.redis_streams import RedisStreamsBus

            bus = RedisStreamsBus(url, prefix=prefix, max_deliveries=max_deliveries)
        else:
            from service.bus.memory import InProcessBus

            bus = InProcessBus(max_deliveries=max_deliveries)
        await bus.start()
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.close()
    if request.param == "redis":
        delete_redis_keys(url, prefix)
