"""What the Redis Streams bus's modules share (:mod:`service.bus.redis_streams`, its claims and its
dead letters): the size of a batch of entries or ids, the text of a Redis reply, and its scripts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis.asyncio as redis

CHUNK = 500  # entries or ids per pipeline, page or script call


def _s(value: Any) -> str:
    """A Redis reply as text (bytes decoded; never raises on bad UTF-8)."""
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


class Scripts:
    """Lua scripts, each registered once (redis-py then sends its hash, and the source only when
    the server lacks it: after a restart, say)."""

    def __init__(self) -> None:
        self._registered: dict[str, Any] = {}

    async def run(self, c: redis.Redis, source: str, keys: list[str], args: list[Any]) -> Any:
        script = self._registered.get(source)
        if script is None:
            script = self._registered[source] = c.register_script(source)
        return await script(keys=keys, args=args, client=c)
