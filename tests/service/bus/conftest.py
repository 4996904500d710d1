"""One behavioural suite, two backends: every test taking ``bus``/``open_bus`` runs on both."""

from __future__ import annotations

from functools import partial

import pytest
from bus_helpers import CLAIM_IDLE_MS, MAX_DELIVERIES


@pytest.fixture
def open_bus(make_bus):
    """A factory of started handles onto one bus (``make_bus``'s ``shared``): with Redis each handle
    is a separate client, as separate worker processes would have; the in-process bus is one object
    shared by its tasks."""
    return partial(make_bus, MAX_DELIVERIES, claim_idle_ms=CLAIM_IDLE_MS, shared=True)


@pytest.fixture
async def bus(open_bus):
    return await open_bus()
