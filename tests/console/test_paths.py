"""Every console page reads the ids in its path alike: whatever is not an id of a row is a 404."""

from __future__ import annotations

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
