"""One behavioural suite, two backends: every test taking ``bus``/``open_bus`` runs on both."""

from __future__ import annotations

import pytest
from bus_helpers import CLAIM_IDLE_MS, MAX_DELIVERIES, delete_keys


@pytest.fixture(params=["inprocess", "redis"])
async def open_bus(request):
    """A factory of started handles onto one bus. With Redis each handle is a separate client, as
    separate worker processes would have; the in-process bus is one object shared by its tasks."""
    opened = []
    if request.param == "redis":
        from service.bus.redis_streams import RedisStreamsBus

        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("bus_prefix")

        def make():
            return RedisStreamsBus(url, prefix=prefix, max_deliveries=MAX_DELIVERIES, claim_idle_ms=CLAIM_IDLE_MS)
    else:
        from service.bus.memory import InProcessBus

        shared = InProcessBus(max_deliveries=MAX_DELIVERIES, claim_idle_ms=CLAIM_IDLE_MS)

        def make():
            return shared

    async def factory():
        bus = make()
        await bus.start()
        opened.append(bus)
        return bus

    yield factory
    for bus in opened:
        await bus.close()
    if request.param == "redis":
        delete_keys(url, prefix)


@pytest.fixture
async def bus(open_bus):
    return await open_bus()
