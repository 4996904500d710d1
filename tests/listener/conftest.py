"""Shared by the listener tests: a migrated SQLite database, and the console's app fixtures for the
connector page tests (``test_connectors_page``), and the runner's waits recorded instead of slept."""

import asyncio

import asyncprawcore.sessions
import pytest

from listener import runner
from models.db import Database
from tests.console.conftest import app_client, console_settings, runtime  # noqa: F401


@pytest.fixture
async def db(sqlite_url):
    """A migrated, empty SQLite database."""
    database = Database(sqlite_url)
    await database.upgrade()
    yield database
    await database.close()


@pytest.fixture
async def made():
    """The connectors a test made (it appends them), closed after it."""
    connectors: list = []
    yield connectors
    for c in connectors:
        await c.close()


@pytest.fixture
def waits(monkeypatch):
    """The runner's waits, recorded instead of slept (and asyncprawcore's own retry pauses cut to 0)."""
    recorded: list[float] = []

    async def no_sleep(stop, seconds):
        recorded.append(seconds)
        await asyncio.sleep(0)

    monkeypatch.setattr(runner, "_sleep", no_sleep)
    monkeypatch.setattr(asyncprawcore.sessions.FiniteRetryStrategy, "_sleep_seconds",
                        lambda self: 0.0 if self.retries < self.DEFAULT_RETRIES else None)
    return recorded
