"""Shared by the service tests: the privacy tests' database, migrated, on SQLite and on PostgreSQL,
their world of people on it (their buses: ``make_bus`` in tests/conftest.py)."""

from __future__ import annotations

import pytest
from privacy_support import World, settings_for


@pytest.fixture
def db(any_db):
    """A migrated, empty database: SQLite, then PostgreSQL (erasure and its races differ on each)."""
    return any_db


@pytest.fixture
def world(db, tmp_path):
    return World(db, settings_for(tmp_path, db.url))
