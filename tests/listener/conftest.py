"""Shared by the listener tests: a migrated SQLite database, and the console's app fixtures for the
connector page tests (``test_connectors_page``)."""

import pytest

from models.db import Database
from tests.console.conftest import app_client, console_settings, runtime  # noqa: F401


@pytest.fixture
async def db(sqlite_url):
    """A migrated, empty SQLite database."""
    database = Database(sqlite_url)
    await database.upgrade()
    yield database
    await database.close()
