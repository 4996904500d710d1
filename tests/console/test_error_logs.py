"""A crash is logged with the route it happened on, never the address asked for: a customer's
address holds their secure link's token."""

from __future__ import annotations

import logging

TOKEN = "bNq0bvImk2Jha_HeZGY7248gihMm4v3r_0_YDqSpBQ4"


async def test_an_unhandled_error_logs_the_routes_pattern_not_the_path(app_client, runtime, monkeypatch, caplog):
    def broken():  # the database hiccups while a customer opens their link
        raise RuntimeError("database is locked")

    monkeypatch.setattr(runtime.db, "session", broken)
    with caplog.at_level(logging.ERROR, logger="socialcare.web"):
        r = await app_client.get(f"/secure/{TOKEN}")
        assert r.status == 500
        r = await app_client.get("/no/such/page/" + TOKEN)
        assert r.status == 500
    messages = [rec.getMessage() for rec in caplog.records if rec.name == "socialcare.web"]
    assert messages == ["unhandled error on GET /secure/{token}", "unhandled error on GET (no route)"]
    assert TOKEN not in caplog.text
