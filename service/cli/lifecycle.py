"""How a long-running command stops. Shared by `run`, `web`, `listen` and `worker`.

The first SIGINT or SIGTERM sets one event, and the command shuts down gracefully (in-flight work
first: up to ``SOCIALCARE_SHUTDOWN_DRAIN_SECONDS`` of draining in `run`). A second one is an operator
(or an orchestrator) who will not wait: the shutdown is cancelled where it stands, what that
abandons is logged, and the command exits with 128 + the signal's number. A shutdown that does not
end within :data:`FORCE_EXIT_S` of it (a task that will not be cancelled), or a third signal, ends
the process at once. Either way it is what a hard kill does, and recovered the same way (README
"Operations").
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("socialcare.stop")
SIGNALS = (signal.SIGINT, signal.SIGTERM)
FORCE_EXIT_S = 5.0  # after a second signal, how long the cancelled shutdown may take before os._exit


class Stopping:
    """What the signals asked so far: ``forced`` is the second signal's number (None: none yet)."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.signals = 0
        self.forced: int | None = None


def _exit_now(code: int) -> None:
    """End the process without waiting for anything more (the logs flushed first)."""
    log.error("stopped at once (exit code %d)", code)
    logging.shutdown()
    os._exit(code)


@contextmanager
def stop_on_signals(stop: asyncio.Event, abandoned: Callable[[], str] | None = None) -> Iterator[Stopping]:
    """Within the block, a first SIGINT/SIGTERM sets ``stop``; a second cancels the task running the
    block, after logging ``abandoned()`` (what the cut-short shutdown leaves undone), and the block
    then raises SystemExit(128 + signal)."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    state = Stopping(stop)

    def on_signal(sig: int) -> None:
        name = signal.Signals(sig).name
        state.signals += 1
        if state.signals == 1:
            log.warning("%s: stopping gracefully (finishing in-flight work); send SIGTERM or SIGINT again "
                        "to stop at once", name)
            stop.set()
            return
        if state.forced is not None:  # a third: nothing more to wait for
            _exit_now(128 + state.forced)
        state.forced = sig
        try:
            what = abandoned() if abandoned is not None else "the shutdown under way"
        except Exception as exc:  # noqa: BLE001 - the exit must not depend on describing it
            what = f"the shutdown under way (not described: {type(exc).__name__})"
        log.error("%s again: stopping now, not waiting for the graceful stop; abandoned: %s", name, what)
        stop.set()
        if main is not None:
            main.cancel()
        loop.call_later(FORCE_EXIT_S, _exit_now, 128 + sig)

    for sig in SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield state
    except asyncio.CancelledError:
        if state.forced is None:
            raise
        raise SystemExit(128 + state.forced) from None
    finally:
        if state.forced is None:  # cut short, they stay: a third signal during the exit ends it at once
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)


def abandoned_work(rt: Any) -> str:
    """What a shutdown cut short leaves undone, from this process's own state: the batches its stage
    workers hold (with Redis redelivered to another worker once the claim-idle time passes; in `run`
    handled again at the next start as the drain's leftovers are) and what the in-process queues
    still hold (that bus lives in this process)."""
    pipeline = getattr(rt, "pipeline", None)
    parts: list[str] = []
    held: dict[str, int] = {}
    for w in getattr(pipeline, "workers", None) or []:
        if getattr(w, "holding", 0):
            held[w.stage.name] = held.get(w.stage.name, 0) + w.holding
    if held:
        parts.append("batches in hand (unacknowledged) " + ", ".join(f"{s} {n}" for s, n in held.items()))
    backlog = getattr(getattr(rt, "bus", None), "backlog", None)
    if pipeline is not None and backlog is not None:
        queued = {s: n for s in dict.fromkeys(w.stage.name for w in pipeline.workers) if (n := backlog(s, s))}
        if queued:
            parts.append("messages still in the in-process queues " + ", ".join(f"{s} {n}" for s, n in queued.items()))
    return "; ".join(parts) or "no batch in hand, no queued message"
