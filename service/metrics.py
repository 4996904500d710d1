"""Prometheus metrics, labelled by stage (the stage name is also its topic and consumer group).

Counters and histograms are per process (a stage's workers each export theirs; Prometheus sums
them). Lag, pending and dead letters describe the shared bus, so they are read from it at scrape
time (:func:`refresh_bus_gauges`) rather than counted by one process. A stage worker exports lag
and pending of the stages it reads only; the web process (and ``run``) of all four: a worker that
exported the others' as 0, never refreshed, hid a stage whose workers were all down (its lag grew
on the bus while every scraped series said 0).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from listener.status import ConnectorGauges

log = logging.getLogger("socialcare.metrics")
STAGE_NAMES = ("ingest", "triage", "route", "act")
TRIAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """One registry per process (tests build their own, so counters never leak between them)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connectors = ConnectorGauges(self.registry)  # set at scrape time from the connectors' rows
        self.processed = Counter("socialcare_stage_messages_total", "Messages handled", ["stage"], registry=self.registry)
        self.errors = Counter("socialcare_stage_errors_total", "Failed handlings", ["stage"], registry=self.registry)
        self.dead_letters = Counter("socialcare_dead_letters_total", "Messages this process dead-lettered",
                                    ["stage"], registry=self.registry)
        self.dead_letter_stream = Gauge(
            "socialcare_dead_letter_stream_messages", "Messages in the dead-letter stream, by the stage they failed in",
            ["stage"], registry=self.registry)
        self.batch_seconds = Histogram("socialcare_stage_batch_seconds", "Time to handle one batch", ["stage"],
                                       registry=self.registry)
        self.pending = Gauge("socialcare_stage_pending", "Delivered, not yet acked", ["stage"], registry=self.registry)
        self.lag = Gauge("socialcare_stage_lag", "Published, not yet delivered", ["stage"], registry=self.registry)
        self.end_to_end = Histogram(
            "socialcare_ingest_to_routed_seconds", "From submission to ingest until the routing decision is committed",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=self.registry,
        )
        self.triage_batch = Histogram("socialcare_triage_batch_seconds", "Time the triager took for one batch",
                                      buckets=TRIAGE_BUCKETS, registry=self.registry)
        self.triage_text = Histogram(
            "socialcare_triage_text_seconds", "Triage time per text (its batch's time shared by its texts)",
            buckets=TRIAGE_BUCKETS, registry=self.registry)
        self.triage_texts = Counter("socialcare_triage_texts_total", "Texts scored by the triager",
                                    registry=self.registry)
        for stage in STAGE_NAMES:  # every series exists from the start (0 until something happens);
            # lag and pending only once read from the bus (refresh_bus_gauges): a 0 never read is a lie
            for family in (self.processed, self.errors, self.dead_letters, self.dead_letter_stream):
                family.labels(stage)

    def observe_triage(self, seconds: float, texts: int) -> None:
        self.triage_batch.observe(seconds)
        if texts:
            self.triage_texts.inc(texts)
            for _ in range(texts):
                self.triage_text.observe(seconds / texts)


class TimedTriager:
    """Wraps a triager so every ``score_batch`` is timed; everything else passes through."""

    def __init__(self, inner: Any, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def score_batch(self, items: Sequence[Any]) -> list[Any]:
        started = time.perf_counter()
        out = await self.inner.score_batch(items)
        if items:
            self.metrics.observe_triage(time.perf_counter() - started, len(items))
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def instrument_triager(ctx: Any, metrics: Metrics | None) -> None:
    """Time the triager of a stage context (once, however many triage workers share the context)."""
    triager = getattr(ctx, "triager", None)
    if metrics is None or triager is None or isinstance(triager, TimedTriager):
        return
    ctx.triager = TimedTriager(triager, metrics)


async def dead_letter_counts(bus: Any) -> dict[str, int]:
    """Dead letters per stage, as the bus counts them (:meth:`~service.bus.base.Bus.dead_letter_counts`:
    a few Redis commands, not a read of the whole dead-letter stream)."""
    return dict(await bus.dead_letter_counts())


async def refresh_connector_gauges(metrics: Metrics, rt: Any, timeout: float = 5.0) -> None:
    """Set the connectors' gauges from ``rt.connector_report()`` (this process's connectors, or what
    the listener process wrote to Redis). Like the bus gauges, a Redis that is away leaves the last
    values after ``timeout``."""
    try:
        metrics.connectors.update(await asyncio.wait_for(rt.connector_report(), timeout))
    except Exception as exc:  # noqa: BLE001 - metrics must answer even when Redis is away
        log.warning("connector gauges not refreshed: %s", type(exc).__name__)


async def refresh_bus_gauges(metrics: Metrics, bus: Any, stages: Iterable[str] = STAGE_NAMES,
                             timeout: float = 5.0) -> None:
    """Set lag and pending of ``stages`` (the series of any other stage are removed: this process
    does not read them) and the dead letters of every stage from the bus. A bus that is away (the
    Redis client retries for half a minute) leaves the last values after ``timeout``: a scrape must
    not hang."""
    stages = list(stages)
    for family in (metrics.pending, metrics.lag):
        for labels in list(family._metrics):  # noqa: SLF001 - the label sets this gauge holds
            if labels[0] not in stages:
                family.remove(*labels)

    async def refresh() -> None:
        for stage in stages:
            metrics.pending.labels(stage).set(await bus.pending(stage, stage))
            metrics.lag.labels(stage).set(await bus.lag(stage, stage))
        counts = await dead_letter_counts(bus)
        for stage in {*STAGE_NAMES, *counts}:
            metrics.dead_letter_stream.labels(stage).set(counts.get(stage, 0))

    try:
        await asyncio.wait_for(refresh(), timeout)
    except Exception as exc:  # noqa: BLE001 - metrics must answer even when the bus is away
        log.warning("bus gauges not refreshed: %s", type(exc).__name__)
