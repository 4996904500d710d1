"""Removing a test's keys from the shared Redis (every bus test names its keys with its own prefix)."""

from __future__ import annotations


def delete_redis_keys(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()
