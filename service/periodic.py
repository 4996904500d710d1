"""Background loops that run a pass every few seconds until told to stop: the SLA checker, the
incident pacer (which also sweeps sends stranded in ``sending`` and releases the public replies held
back for their post's hide: :func:`service.dispatch.run_pacer`, :mod:`service.stranded`), the outgoing-webhook
sender, the digest schedule, the connector status report.
A failing pass is logged and the next one runs on time; a stop ends the wait at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from service.outages import log_failure

log = logging.getLogger("socialcare.periodic")


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True when it was."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


async def every(seconds: float, work: Callable[[], Awaitable[object]], stop: asyncio.Event, *,
                what: str, logger: logging.Logger = log) -> None:
    """Run ``work`` now and then every ``seconds`` until ``stop``; a failure is logged as ``what``."""
    while not stop.is_set():
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad pass must not end the loop
            log_failure(logger, exc, "%s failed", what)  # the database or Redis away: a line per back-off
        if await wait_or_stop(stop, seconds):
            return
