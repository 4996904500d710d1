"""Constants and helpers shared by the bus tests (a unique module name: several test directories
have a conftest.py, so ``from conftest import`` would be ambiguous in a whole-suite run)."""

from __future__ import annotations

from tests.redis_keys import delete_redis_keys as delete_keys  # noqa: F401 (the bus tests' name for it)

MAX_DELIVERIES = 3
# A delivery counts as stale after 1 s idle: long enough that a slow machine between two reads of
# one drain never makes a test's own fresh delivery look abandoned (200 ms did, under a loaded CI).
CLAIM_IDLE_MS = 1000
