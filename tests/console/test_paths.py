"""Every console page reads the ids in its path alike: whatever is not an id of a row is a 404."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from console.paths import MAX_ID, parse_id
from models import ModerationAction
from service.settings import load_settings
from tests.console.conftest import login

HUGE = "99999999999999999999999"  # beyond any database integer: once an OverflowError, a 500


async def test_oversized_and_non_ascii_ids_are_not_found_on_every_page(app_client):
    csrf = await login(app_client, "alice")
    for path in (f"/conversations/{HUGE}", f"/cases/{HUGE}", f"/incidents/{HUGE}", f"/customers/{HUGE}",
                 "/cases/\u0661", "/cases/0"):
        r = await app_client.get(path, allow_redirects=False)
        assert r.status == 404, (path, r.status)
    for path in (f"/cases/{HUGE}/take", f"/cases/{HUGE}/resolve", f"/cases/{HUGE}/link", f"/customers/{HUGE}",
                 f"/incidents/{HUGE}/status", f"/incidents/{HUGE}/close", f"/conversations/{HUGE}/claim"):
        r = await app_client.post(path, data={"csrf_token": csrf, "reason": "checking an order for her"},
                                  allow_redirects=False)
        assert r.status == 404, (path, r.status)


# a number int() refuses (more than 4300 digits: ValueError, once a 500), digits int() would read as
# another id ("١" is 1), and the first numbers past int64 and past MAX_ID
BAD_IDS = ("9" * 5000, "\u0661", "1\u0662", "\u0661" * 25, str(2**63), str(2**64), str(MAX_ID))


@pytest.fixture
def console_settings(tmp_path, any_database_url):
    return load_settings(database_url=any_database_url, bus="inprocess", var_dir=tmp_path / "var", demo=False,
                         dry_run=True, bus_block_ms=50, cookie_secure=False)


async def test_an_id_of_thousands_of_digits_non_ascii_digits_or_past_int64_is_not_found(app_client):
    csrf = await login(app_client, "root")  # an admin reaches every page, moderation's too
    for bad in BAD_IDS:
        for path in (f"/conversations/{bad}", f"/cases/{bad}", f"/incidents/{bad}", f"/customers/{bad}"):
            r = await app_client.get(path, allow_redirects=False)
            assert r.status == 404, (path[:40], r.status)
        for path in (f"/cases/{bad}/take", f"/incidents/{bad}/close", f"/conversations/{bad}/claim",
                     f"/moderation/{bad}/review", f"/moderation/alerts/{bad}/acknowledge",
                     f"/moderation/replies/{bad}/delete", f"/admin/users/{bad}/active"):
            r = await app_client.post(path, data={"csrf_token": csrf, "decision": "approve", "reason": "spam"},
                                      allow_redirects=False)
            assert r.status == 404, (path[:40], r.status)
    r = await app_client.get(f"/cases/{MAX_ID - 1}", allow_redirects=False)  # the largest id: looked up, not found
    assert r.status == 404


@pytest.mark.parametrize("text, expected", [
    ("1", 1), (str(MAX_ID - 1), MAX_ID - 1), ("0" * 18 + "7", 7),
    ("", None), ("0", None), ("-1", None), ("+1", None), (" 1", None), ("1.0", None), ("\u0661", None),
    ("\u00b2", None), ("9" * 5000, None), ("0" * 20 + "1", None), (str(2**63), None), (str(MAX_ID), None)])
def test_parse_id_reads_ascii_digits_within_range_only(text, expected):
    assert parse_id(text) == expected


async def test_bulk_review_ids_past_int64_non_ascii_or_thousands_of_digits_are_a_400(app_client, runtime):
    csrf = await login(app_client, "mod")

    async def bulk(*ids: str):
        form = [("ids", i) for i in ids] + [("decision", "approve"), ("csrf_token", csrf)]
        return await app_client.post("/moderation/bulk", data=form, allow_redirects=False)

    for bad in BAD_IDS:
        for ids in ((bad,), ("5", bad)):  # alone, or after a good id: the whole form is refused
            r = await bulk(*ids)
            assert r.status == 400, (bad[:30], r.status)
            assert "ids must be numbers" in await r.text()
    r = await bulk(str(MAX_ID - 1))  # an id, of no held post: refused by name, not a database overflow
    assert r.status == 400 and "nothing approved" in await r.text()
    async with runtime.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(ModerationAction)) == 0
