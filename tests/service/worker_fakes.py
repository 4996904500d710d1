"""Fakes shared by the worker and bus tests (a unique module name: tests/service is on the path)."""

from __future__ import annotations

import asyncio

from listener.protocol import ActionResult


class Database:
    """What a worker asks of the stage's database: does it answer (``up``)?"""

    def __init__(self) -> None:
        self.up = True

    async def ping(self) -> bool:
        return self.up


class Context:
    """A stage's context holding only that database."""

    def __init__(self) -> None:
        self.db = Database()


class SlowX:
    """X, answering each call after ``delay`` seconds; records the calls it completed."""

    def __init__(self, delay: float = 0.0, name: str = "x") -> None:
        self.name, self.platform, self.delay, self.calls = name, "x", delay, []
        self.started = asyncio.Event()

    async def perform(self, action):  # noqa: ANN001, ANN201
        self.started.set()
        await asyncio.sleep(self.delay)
        self.calls.append(action)
        return ActionResult(ok=True, external_ids=[f"r{len(self.calls)}"])


class SentOnX:
    """An X connector that answers every send "posted", keeping the texts it was given."""

    def __init__(self) -> None:
        self.name, self.platform, self.calls = "x", "x", []

    async def perform(self, action):  # noqa: ANN001, ANN201
        self.calls.append(action.text)
        return ActionResult(ok=True, external_ids=[f"r{len(self.calls)}"])

