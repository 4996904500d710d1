"""``/cases/escalate``: the mention id of the form is read as ASCII digits a database integer holds.
Anything else is a 400 and nothing is escalated: not a 500 from PostgreSQL's BIGINT overflow, and
not another mention ("١", an Arabic-Indic one, which int() reads as 1)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from models import Case
from service.settings import load_settings
from tests.console.conftest import add_mention, login

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.fixture
def console_settings(tmp_path, any_database_url):
    return load_settings(database_url=any_database_url, bus="inprocess", var_dir=tmp_path / "var", demo=False,
                         dry_run=True, bus_block_ms=50, cookie_secure=False)


async def cases(runtime) -> int:
    async with runtime.db.session() as s:
        return await s.scalar(select(func.count()).select_from(Case))


async def test_a_mention_id_that_is_not_ascii_digits_within_range_is_a_400(app_client, runtime):
    m = await add_mention(runtime, "someone got into my account", outcome="escalate_private", sensitivity="account")
    csrf = await login(app_client, "alice")
    for bad in ("99999999999999999999999", str(m.id).translate(ARABIC_INDIC), "9" * 5000, str(2**63), "0", "-1",
                f"+{m.id}", "", "1e3", f"{m.id}.0"):
        r = await app_client.post("/cases/escalate", data={"csrf_token": csrf, "mention_id": bad},
                                  allow_redirects=False)
        assert r.status == 400, (bad[:30], r.status)
        assert "mention_id must be a number" in await r.text()
    assert await cases(runtime) == 0
    r = await app_client.post("/cases/escalate", data={"csrf_token": csrf, "mention_id": "987654321"},
                              allow_redirects=False)
    assert r.status == 404  # a number no mention has
    r = await app_client.post("/cases/escalate", data={"csrf_token": csrf, "mention_id": str(m.id)},
                              allow_redirects=False)
    assert r.status == 303 and r.headers["Location"].startswith("/cases/")
    assert await cases(runtime) == 1
