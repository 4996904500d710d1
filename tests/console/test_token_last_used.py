"""A token's last use: stamped when it authenticates, written at most once a minute per token (a
busy bot does not write on every request), never by a refused token, and shown to admins."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import event, select, update

from console.auth import LAST_USED_EVERY
from models import ApiToken, User
from models.base import utcnow
from tests.console.conftest import bot_token, login


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _last_used(runtime, name: str = "alice-bot"):
    async with runtime.db.session() as s:
        return await s.scalar(select(ApiToken.last_used_at).where(ApiToken.name == name))


def count_token_writes(runtime) -> list[str]:
    """Every stamp of a token's last use the engine sends, from now on."""
    writes: list[str] = []

    def seen(conn, cursor, statement, *args):
        said = statement.lstrip().upper()
        if said.startswith("UPDATE API_TOKENS") and "LAST_USED_AT IS NULL" in said:
            writes.append(statement)

    event.listen(runtime.db.engine.sync_engine, "before_cursor_execute", seen)
    return writes


async def test_a_token_is_stamped_when_it_authenticates_at_most_once_a_minute(app_client, runtime):
    token = await bot_token(runtime, "alice", ["mentions:read"])
    assert await _last_used(runtime) is None
    writes = count_token_writes(runtime)
    before = utcnow()
    for _ in range(5):  # a busy bot
        assert (await app_client.get("/api/v1/mentions", headers=bearer(token))).status == 200
    first = await _last_used(runtime)
    assert first is not None and before - timedelta(seconds=1) <= first <= utcnow()
    assert len(writes) == 1, writes  # one write for five requests in the same minute
    async with runtime.db.session() as s:  # a minute later the next request stamps it again
        await s.execute(update(ApiToken).values(last_used_at=first - LAST_USED_EVERY))
        await s.commit()
    assert (await app_client.get("/api/v1/mentions", headers=bearer(token))).status == 200
    assert await _last_used(runtime) >= first and len(writes) == 2


async def test_a_refused_token_is_not_stamped(app_client, runtime):
    token = await bot_token(runtime, "alice", ["mentions:read"])
    async with runtime.db.session() as s:
        await s.execute(update(User).where(User.username == "alice").values(active=False))
        await s.commit()
    assert (await app_client.get("/api/v1/mentions", headers=bearer(token))).status == 401
    async with runtime.db.session() as s:
        await s.execute(update(User).where(User.username == "alice").values(active=True))
        await s.execute(update(ApiToken).values(revoked_at=utcnow()))
        await s.commit()
    assert (await app_client.get("/api/v1/mentions", headers=bearer(token))).status == 401
    assert await _last_used(runtime) is None


async def test_a_token_without_the_scope_still_counts_as_used(app_client, runtime):
    """It authenticated (the 403 names what it lacks): the admin sees it is in use."""
    token = await bot_token(runtime, "alice", ["templates:read"])
    assert (await app_client.get("/api/v1/mentions", headers=bearer(token))).status == 403
    assert await _last_used(runtime) is not None


async def test_the_admin_token_list_shows_last_use_or_never(app_client, runtime):
    token = await bot_token(runtime, "alice", ["mentions:read"])
    await login(app_client, "root")

    def cells() -> list[str]:
        block = re.search(r'<tr class="tokens" data-tokens-of="alice">(.*?)</table>', html, re.DOTALL)
        head = re.findall(r"<th>(.*?)</th>", block.group(1))
        row = re.search(r'<tr data-token="\d+">(.*?)</tr>', block.group(1), re.DOTALL).group(1)
        return dict(zip(head, re.findall(r"<td>(.*?)</td>", row, re.DOTALL)))

    html = await (await app_client.get("/admin/users")).text()
    assert cells()["Last used"] == "never"
    assert (await app_client.get("/api/v1/mentions", headers=bearer(token))).status == 200
    html = await (await app_client.get("/admin/users")).text()
    assert cells()["Last used"] == f"{await _last_used(runtime):%Y-%m-%d %H:%M}"
    assert "not recorded" not in html


async def test_two_processes_that_read_a_stale_stamp_write_it_once(any_db):
    """Both read the token before either stamped it; the conditional UPDATE lets one through."""
    from console.auth import create_api_token, create_user, note_token_use

    async with any_db.session() as s:
        user = await create_user(s, "zed", "zed password 1", "agent")
        await create_api_token(s, user, "zed-bot", ["mentions:read"])
        await s.commit()
    now = utcnow()
    async with any_db.session() as one, any_db.session() as two:
        first, second = [await s.scalar(select(ApiToken)) for s in (one, two)]
        await note_token_use(one, first, now)
        await note_token_use(two, second, now + timedelta(seconds=5))
    async with any_db.session() as s:
        assert await s.scalar(select(ApiToken.last_used_at)) == now
    async with any_db.session() as s:  # a minute on, it is stamped again
        await note_token_use(s, await s.scalar(select(ApiToken)), now + LAST_USED_EVERY)
    async with any_db.session() as s:
        assert await s.scalar(select(ApiToken.last_used_at)) == now + LAST_USED_EVERY
