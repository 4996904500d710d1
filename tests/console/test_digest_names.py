"""What the digest calls its period and its files: the picker says "daily"/"weekly" as the title
and the mail do, and a file is named by the last day it covers (its end is the midnight after)."""

from __future__ import annotations

import re

from tests.console.conftest import login
from tests.console.test_digest import seed


async def test_files_are_named_by_the_last_day_they_cover_and_the_picker_says_daily_or_weekly(app_client, runtime):
    await seed(runtime)
    await login(app_client, "mia")
    for path, name in (("/digest.csv?period=day&end=2026-11-20", "digest-day-20261120.csv"),
                       ("/digest.html?period=week&end=2026-11-23", "digest-week-20261123.html")):
        r = await app_client.get(path)
        assert r.status == 200 and r.headers["Content-Disposition"] == f'attachment; filename="{name}"', path
    page = await (await app_client.get("/digest?period=day&end=2026-11-23")).text()
    options = re.findall(r'<option value="(day|week)"[^>]*>([^<]*)</option>', page)
    assert options == [("day", "daily (one day)"), ("week", "weekly (seven days)")]
    assert "Sentiment digest · daily" in page  # the title says the same word
