"""Running a connector: stream, publish, then save the cursor.

The cursor moves on only after ``publish`` returned, so a crash between the two repeats a batch
(ingest is idempotent) but never loses one. A 429 waits for the window to reset; 5xx, network
errors and malformed payloads back off exponentially with jitter; an authentication error stops
this connector alone, with a clear log line and ``status`` for the console (``/connectors``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from listener.backoff import Backoff, rate_limit_wait
from listener.errors import AuthError, RateLimited

log = logging.getLogger("socialcare.listener")
State = Literal["starting", "running", "backing_off", "stopped"]


@dataclass
class ConnectorStatus:
    """What the console shows for one connector (``/connectors``)."""

    state: State = "starting"
    last_error: str | None = None  # why it is backing off, or why it stopped (None after a success)
    last_poll_at: float | None = None  # epoch seconds of the last successful fetch
    mentions_seen: int = 0
    retry_at: float | None = None  # epoch seconds of the next attempt while backing off
    stopped_by_error: bool = False  # stopped by 401/403: it will not retry until restarted

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def run_connector(connector: Any, publish: Callable[[list], Awaitable[Any]], cursors: Any,
                        stop: asyncio.Event, *, max_wait: float = 900.0, backoff_base: float = 1.0,
                        backoff_cap: float = 300.0) -> ConnectorStatus:
    """Run until ``stop`` is set, a finite stream ends, or an authentication error."""
    status = getattr(connector, "status", None) or ConnectorStatus()
    connector.status = status
    backoff = Backoff(backoff_base, backoff_cap)
    status.stopped_by_error = False
    while not stop.is_set():
        try:
            cursor = await cursors.get(connector.name)
            async for batch, new_cursor in connector.stream(cursor):
                if batch:
                    await publish(batch)  # on the bus first ...
                    status.mentions_seen += len(batch)
                await cursors.set(connector.name, new_cursor)  # ... then the cursor moves on
                status.state, status.last_poll_at = "running", time.time()
                status.last_error, status.retry_at = None, None
                backoff.reset()
                if stop.is_set():
                    break
            else:
                break  # a finite stream (replay) ended
        except AuthError as exc:
            status.state, status.last_error, status.retry_at = "stopped", str(exc), None
            status.stopped_by_error = True
            log.error("connector %s stopped: %s (fix its credentials and restart; other connectors keep running)",
                      connector.name, exc)
            return status
        except RateLimited as exc:
            wait = min(rate_limit_wait(exc.reset_at, exc.retry_after), max_wait)
            _waiting(status, f"rate limited; retrying in {wait:.0f} s", wait)
            log.warning("connector %s rate limited; waiting %.0f s", connector.name, wait)
            await _sleep(stop, wait)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - transient: 5xx, network, malformed payloads
            delay = backoff.next_delay()
            _waiting(status, f"{type(exc).__name__}: {str(exc)[:200]}", delay)
            log.warning("connector %s failed (%s: %s); retry %d in %.1f s", connector.name, type(exc).__name__,
                        str(exc)[:200], backoff.failures, delay)
            await _sleep(stop, delay)
    status.state, status.retry_at = "stopped", None
    return status


def _waiting(status: ConnectorStatus, message: str, seconds: float) -> None:
    status.state, status.last_error, status.retry_at = "backing_off", message, time.time() + seconds


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
