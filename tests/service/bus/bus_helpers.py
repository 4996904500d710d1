"""Constants and helpers shared by the bus tests (a unique module name: several test directories
have a conftest.py, so ``from conftest import`` would be ambiguous in a whole-suite run)."""

from __future__ import annotations

MAX_DELIVERIES = 3
CLAIM_IDLE_MS = 200


def delete_keys(redis_url: str, prefix: str) -> None:
    """Remove a test's streams from the shared Redis."""
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()
