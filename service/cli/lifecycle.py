"""How a long-running command stops: SIGINT or SIGTERM sets one event, and the command then shuts
down gracefully (in-flight work first). Shared by `run`, `web`, `listen` and `worker`."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[asyncio.Event]:
    """Within the block, SIGINT/SIGTERM set ``stop`` instead of killing the process."""
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
