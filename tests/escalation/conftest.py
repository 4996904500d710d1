"""Fixtures for the escalation tests: a local SMTP sink and the console over a real database."""

from __future__ import annotations

import asyncio

import pytest
from escalation_support import SmtpSink, World, escalation_settings, free_port, open_world


@pytest.fixture
def smtp_sink():
    """An aiosmtpd server on 127.0.0.1 and a free port, keeping what it receives."""
    from aiosmtpd.controller import Controller

    sink = SmtpSink(port=free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    yield sink
    controller.stop()


@pytest.fixture
async def world(tmp_path, sqlite_url, smtp_sink):
    rt, client, maria, tom = await open_world(escalation_settings(tmp_path, sqlite_url, smtp_sink.port))
    yield World(rt, client, maria, tom)
    await client.close()
    await rt.close()


_TRIAGER: dict[str, object] = {}


@pytest.fixture
async def triager():
    """The real triage models (loaded once per test session)."""
    if "cascade" not in _TRIAGER:
        from service.settings import load_settings
        from triage import build_triager

        _TRIAGER["cascade"] = await asyncio.to_thread(build_triager, load_settings(triage_mode="cascade"))
    return _TRIAGER["cascade"]
