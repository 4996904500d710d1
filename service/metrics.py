"""Prometheus metrics, labelled by stage (the stage name is also its topic and consumer group)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """One registry per process (tests build their own, so counters never leak between them)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.processed = Counter("socialcare_stage_messages_total", "Messages handled", ["stage"], registry=self.registry)
        self.errors = Counter("socialcare_stage_errors_total", "Failed handlings", ["stage"], registry=self.registry)
        self.dead_letters = Counter("socialcare_dead_letters_total", "Messages dead-lettered", ["stage"],
                                    registry=self.registry)
        self.batch_seconds = Histogram("socialcare_stage_batch_seconds", "Time to handle one batch", ["stage"],
                                       registry=self.registry)
        self.pending = Gauge("socialcare_stage_pending", "Delivered, not yet acked", ["stage"], registry=self.registry)
        self.lag = Gauge("socialcare_stage_lag", "Published, not yet delivered", ["stage"], registry=self.registry)
        self.end_to_end = Histogram(
            "socialcare_ingest_to_routed_seconds", "From submission to ingest until the routing decision is committed",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=self.registry,
        )
