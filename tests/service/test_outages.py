"""Which failures mean the database or Redis is away (service.outages), and how they are logged: one
WARNING line per back-off without a traceback, from a request or from a background loop (the
outgoing-webhook sender's, the pacer's), instead of a traceback every pass; anything else keeps its
ERROR and traceback. Realistic failures come from real clients pointed at a closed port."""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3

import asyncpg
import pytest
import redis.asyncio as aioredis
import redis.exceptions as rx
from sqlalchemy import exc as sa
from sqlalchemy import text

from models.db import Database
from service import outages
from service.bus.base import BusUnavailable
from service.outages import DATABASE, REDIS, OutageLog, log_failure, unavailable


@pytest.fixture(autouse=True)
def fresh_outage_log(monkeypatch):
    monkeypatch.setattr(outages, "OUTAGES", OutageLog())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def database_refused() -> BaseException:
    """What a query raises through SQLAlchemy and asyncpg when PostgreSQL refuses connections."""
    db = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/nothing")
    try:
        async with db.session() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        return exc
    finally:
        await db.close()
    raise AssertionError("a closed port answered")


async def redis_refused() -> BaseException:
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0", socket_connect_timeout=2)
    try:
        await client.get("x")
    except Exception as exc:  # noqa: BLE001
        return exc
    finally:
        await client.aclose()
    raise AssertionError("a closed port answered")


async def test_what_the_clients_raise_when_their_server_refuses_is_an_outage():
    refused = await database_refused()
    assert isinstance(refused, OSError)  # a bare ConnectionRefusedError, not wrapped by SQLAlchemy
    assert unavailable(refused) == DATABASE
    assert unavailable(await redis_refused()) == REDIS
    try:  # the same OSError outside any database or Redis client is not theirs
        await asyncio.open_connection("127.0.0.1", closed_port())
    except OSError as exc:
        assert unavailable(exc) is None
    try:
        open("/nonexistent/socialcare/file")  # noqa: SIM115
    except OSError as exc:
        assert unavailable(exc) is None


@pytest.mark.parametrize(("exc", "kind"), [
    (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"), DATABASE),
    (asyncpg.exceptions.CannotConnectNowError("the database system is starting up"), DATABASE),
    (asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"), DATABASE),
    (asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"), DATABASE),
    (asyncpg.exceptions.InterfaceError("connection is closed"), DATABASE),
    (asyncpg.exceptions.InterfaceError("cannot perform operation: another operation is in progress"), None),
    (asyncpg.exceptions.UniqueViolationError("duplicate key"), None),
    (asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence for encoding UTF8: 0x00"), None),
    (sa.TimeoutError("QueuePool limit of size 10 overflow 10 reached"), DATABASE),
    (sa.OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked")), DATABASE),
    (sa.OperationalError("SELECT 1", {}, sqlite3.OperationalError("no such table: mentions")), None),
    (sa.InterfaceError("SELECT 1", {}, Exception("x"), connection_invalidated=True), DATABASE),
    (sa.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")), None),
    (rx.ConnectionError("Error 111 connecting"), REDIS),
    (rx.TimeoutError("Timeout reading from socket"), REDIS),
    (rx.ResponseError("WRONGTYPE"), None),
    (BusUnavailable("Redis did not answer for 30 s"), REDIS),
    (ValueError("bad"), None),
    (TimeoutError(), None),  # raised nowhere near a client: an outgoing call's, a task's
])
def test_outages_are_told_from_bugs(exc, kind):
    assert unavailable(exc) == kind


def test_an_outage_under_another_exception_is_still_one():
    try:
        try:
            raise rx.ConnectionError("Error 111")
        except rx.ConnectionError as inner:
            raise RuntimeError("could not publish") from inner
    except RuntimeError as exc:
        assert unavailable(exc) == REDIS
    wrapped = sa.DBAPIError("SELECT 1", {}, asyncpg.exceptions.CannotConnectNowError("starting up"))
    assert unavailable(wrapped) == DATABASE  # SQLAlchemy's ``orig``


def test_one_line_per_back_off_with_the_count_and_a_new_outage_logged_at_once(caplog):
    now = [1000.0]
    log = OutageLog(clock=lambda: now[0])
    logger = logging.getLogger("socialcare.test-outages")
    caplog.set_level(logging.INFO, logger=logger.name)
    exc = rx.ConnectionError("x")
    logged = []
    for second in range(0, 45):  # a request every 0.25 s for 45 s
        for quarter in range(4):
            now[0] = 1000.0 + second + quarter / 4
            if log.note(logger, REDIS, exc, "POST /api/v1/ingest"):
                logged.append(now[0] - 1000.0)
    first, second_gap = outages.BACKOFF_S[0], outages.BACKOFF_S[0] * 2
    assert logged == [0.0, first, first + second_gap]  # 0 s, 10 s, 30 s: doubling, not 180 lines
    lines = [r for r in caplog.records if r.name == logger.name]
    assert len(lines) == 3 and all(r.levelno == logging.WARNING and not r.exc_info and not r.exc_text for r in lines)
    assert lines[0].getMessage().startswith("Redis is unavailable (ConnectionError): POST /api/v1/ingest")
    assert "(first met 10 s ago; 39 more failures like it since the last line)" in lines[1].getMessage()
    now[0] += outages.QUIET_S + 1  # quiet for a while: the next failure is a new outage, logged at once
    assert log.note(logger, REDIS, exc, "POST /api/v1/ingest")
    assert log.note(logging.getLogger("socialcare.other"), REDIS, exc, "a pass")  # each logger its own


def test_log_failure_keeps_errors_with_their_traceback_and_makes_an_outage_one_line(caplog):
    logger = logging.getLogger("socialcare.test-failures")
    caplog.set_level(logging.INFO, logger=logger.name)
    for _ in range(5):
        try:
            raise KeyError("a bug")
        except KeyError as exc:
            log_failure(logger, exc, "%s failed", "the pass")
    bugs = [r for r in caplog.records if r.name == logger.name]
    assert len(bugs) == 5 and all(r.levelno == logging.ERROR and (r.exc_info or r.exc_text) for r in bugs)  # exc_text: the redacting filter formatted it
    assert bugs[0].error_type == "KeyError"
    caplog.clear()
    log_failure(logger, KeyError("x"), "step %s failed (%s)", "one", "KeyError", traceback=False)
    assert caplog.records[0].levelno == logging.ERROR and not caplog.records[0].exc_info and not caplog.records[0].exc_text
    caplog.clear()
    for _ in range(20):
        log_failure(logger, sa.TimeoutError("pool"), "%s failed", "the pass")
    assert len(caplog.records) == 1 and caplog.records[0].levelno == logging.WARNING
    assert caplog.records[0].getMessage().startswith("the database is unavailable (TimeoutError): the pass failed")


async def test_the_webhook_senders_loop_logs_a_database_outage_once_not_a_traceback_a_pass(caplog):
    """service.periodic.every, which runs the outgoing-webhook sender (and the SLA checker, the digest
    schedule...): 30 passes against a refusing database are one line; a bug is still a traceback."""
    from service.periodic import every

    refused = await database_refused()
    logger = logging.getLogger("socialcare.webhooks")
    caplog.set_level(logging.INFO, logger="socialcare")
    stop, passes = asyncio.Event(), []

    async def work() -> None:
        passes.append(1)
        if len(passes) >= 30:
            stop.set()
        raise refused

    await every(0.001, work, stop, what="webhook sender pass", logger=logger)
    lines = [r for r in caplog.records if r.name == "socialcare.webhooks"]
    assert len(passes) == 30 and len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.WARNING and not lines[0].exc_info and not lines[0].exc_text
    assert "the database is unavailable (ConnectionRefusedError): webhook sender pass failed" in lines[0].getMessage()

    caplog.clear()
    stop, passes = asyncio.Event(), []

    async def buggy() -> None:
        passes.append(1)
        if len(passes) >= 3:
            stop.set()
        raise KeyError("a bug")

    await every(0.001, buggy, stop, what="webhook sender pass", logger=logger)
    bugs = [r for r in caplog.records if r.name == "socialcare.webhooks"]
    assert len(bugs) == 3 and all(r.levelno == logging.ERROR and (r.exc_info or r.exc_text) for r in bugs)


async def test_the_pacers_steps_log_a_database_outage_once_for_all_of_them(caplog):
    """Six steps a pass, a pass every few seconds: one line, not six ERROR lines a pass."""
    from service.pacer import run_pacer

    refused = await database_refused()
    stop, calls = asyncio.Event(), []

    class Away:
        def __getattr__(self, name):
            async def step() -> None:
                calls.append(name)
                if len(calls) >= 60:
                    stop.set()
                raise refused
            return step

    caplog.set_level(logging.INFO, logger="socialcare")
    await run_pacer(Away(), 0.001, stop)
    lines = [r for r in caplog.records if r.name == "socialcare.dispatch"]
    assert len(calls) >= 60 and len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.WARNING and "the database is unavailable" in lines[0].getMessage()
