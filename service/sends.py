"""One platform call, sheltered from a stop and from a cancel (used by :class:`service.dispatch.Dispatcher`).

A send is claimed (``sending``, committed) before its platform call and its outcome recorded after
it. Cancelled between the two — a SIGTERM's stop, a worker's watchdog — the row would stay
``sending`` with nobody knowing whether the platform got the call: so a cancel waits for the call
under way and the commit of its outcome (:func:`finish_despite_cancel`), and a graceful stop with
Redis Streams starts no new send (:class:`SendsStopped`), leaving the rest for redelivery. A process
killed outright (SIGKILL) leaves its claim to the sweep (:mod:`service.stranded`); its call may still
answer if the process was not dead after all, and that answer is recorded only for its own attempt
(:func:`service.stranded.record_reply_outcome`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

log = logging.getLogger("socialcare.dispatch")
T = TypeVar("T")


class SendsStopped(asyncio.CancelledError):
    """The process is stopping (:meth:`Dispatcher.halt`, with Redis Streams only), so no new send was
    started: the replies and actions not sent yet stay ``pending``/``queued``. A cancellation, not an
    error: the act stage's worker leaves the message unacknowledged, and its redelivery (to another
    worker once the claim-idle time is past, or after the restart) sends the rest. That redelivery
    counts one attempt of the message, as any does (neither bus can give a delivery back without
    one yet): a message stopped ``max_deliveries`` times is dead-lettered, and the pacer's pass then
    sends what it left, once older than the stranded bound (:data:`service.stranded.ORPHANED_REPLIES`)."""


async def finish_despite_cancel(aw: Awaitable[T]) -> T:
    """Await ``aw`` (one platform call and the commit of its outcome) to its end even when the caller
    is cancelled meanwhile, then pass the cancellation on: a cancel never leaves a row ``sending``
    with the call made or not. A call that was itself cancelled raises as it did."""
    task = asyncio.ensure_future(aw)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait([task])  # a cancel ends this wait, not the call
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled() and task.exception() is not None:
            log.error("a send finished after a cancel failed: %s", type(task.exception()).__name__)
        raise asyncio.CancelledError
    return task.result()
