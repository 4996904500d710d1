"""The one protocol of a pipeline stage, and what stages share."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from service.bus import Envelope

STAGES = ("ingest", "triage", "route", "act")


@dataclass(frozen=True)
class Outgoing:
    """A message a stage emits for the next one, published only after the stage committed."""

    topic: str
    key: str
    payload: dict[str, Any]


@dataclass
class StageContext:
    """What every stage may use; built once per process from the settings."""

    settings: Any
    db: Any  # models.db.Database
    triager: Any = None  # triage.protocol.Triager, for the triage stage
    connectors: dict[str, Any] = field(default_factory=dict)  # platform -> listener Connector
    metrics: Any = None
    events: Any = None  # console live-queue notifier: callable(kind, data) or None


class Stage(Protocol):
    """Handles a batch of its topic's messages in one transaction and returns what follows.

    Must be idempotent: handling a message again (redelivery) creates no second row, score,
    decision, reply or case. Raising fails the whole batch; the worker then retries the messages
    one by one so a poison message is isolated and dead-lettered alone.
    """

    name: str

    async def handle(self, batch: list[Envelope]) -> list[Outgoing]: ...


def trace(payload: dict[str, Any]) -> dict[str, Any]:
    """The timing carried along the pipeline (ingest time, for end-to-end latency)."""
    return {"t0": payload.get("t0") or time.time()}
