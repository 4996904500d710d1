"""`socialcare users token --expires-in DAYS`: the token's ``expires_at``, which authentication enforces
(an expired token is a 401 "invalid or expired token")."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import update

from models import ApiToken, AuditEvent
from models.base import utcnow
from tests.service.test_cli_users import cli, rows, write  # noqa: F401  (the fixture)


def test_a_token_made_with_expires_in_carries_its_expiry(cli):  # noqa: F811
    assert cli("users", "add", "botowner", "--role", "agent", "--password", "bot owner pass 1").exit_code == 0
    before = utcnow()
    r = cli("users", "token", "botowner", "--name", "shortlived", "--scope", "mentions:read", "--expires-in", "7")
    assert r.exit_code == 0, r.output
    token = r.stdout.strip()
    assert re.fullmatch(r"sc_[A-Za-z0-9_-]{40,}", token)  # stdout is the token alone
    assert "expires" in r.stderr
    (row,) = rows(cli.db_file, ApiToken, ApiToken.name == "shortlived")
    assert before + timedelta(days=7) <= row.expires_at <= utcnow() + timedelta(days=7)
    (event,) = rows(cli.db_file, AuditEvent, AuditEvent.action == "token.created")
    assert event.details["expires_at"].startswith(row.expires_at.date().isoformat())
    r = cli("users", "token", "botowner", "--name", "forever", "--scope", "mentions:read")
    (row,) = rows(cli.db_file, ApiToken, ApiToken.name == "forever")
    assert r.exit_code == 0 and row.expires_at is None
    write(cli.db_file, update(ApiToken).where(ApiToken.name == "shortlived")
          .values(expires_at=utcnow() - timedelta(minutes=1)))
    listed = cli("users", "tokens", "botowner")
    assert re.search(r"\tshortlived\t.*\texpired\t", listed.stdout), listed.stdout


def test_expires_in_must_be_a_positive_number_of_days_and_is_in_the_help(cli):  # noqa: F811
    assert cli("users", "add", "botowner", "--role", "agent", "--password", "bot owner pass 1").exit_code == 0
    for bad in ("0", "-1", "soon", "99999"):
        r = cli("users", "token", "botowner", "--name", "b", "--scope", "mentions:read", "--expires-in", bad)
        assert r.exit_code == 2 and "--expires-in" in r.output and "Traceback" not in r.output, (bad, r.output)
    assert rows(cli.db_file, ApiToken) == []
    help_text = cli("users", "token", "--help").output
    assert "--expires-in DAYS" in help_text and "never expires" in help_text


async def test_an_expired_token_is_refused_by_the_api(tmp_path, sqlite_url):
    from aiohttp.test_utils import TestClient, TestServer

    from console.app import create_app
    from console.auth import create_api_token, create_user
    from service.runtime import Runtime
    from service.settings import load_settings
    from tests.console.conftest import NoTriage

    settings = load_settings(database_url=sqlite_url, bus="inprocess", var_dir=tmp_path / "var", demo=False,
                             dry_run=True, cookie_secure=False)
    rt = await Runtime.open(settings, stages=[], with_connectors=False, triager=NoTriage())
    try:
        async with rt.db.session() as s:
            user = await create_user(s, "amy", "amy password 9", "agent")
            token = await create_api_token(s, user, "b", ["mentions:read"])
            await s.commit()
        async with TestClient(TestServer(create_app(rt))) as client:
            h = {"Authorization": f"Bearer {token}"}
            assert (await client.get("/api/v1/queue", headers=h)).status == 200
            async with rt.db.session() as s:
                await s.execute(update(ApiToken).values(expires_at=utcnow() - timedelta(seconds=1)))
                await s.commit()
            r = await client.get("/api/v1/queue", headers=h)
            assert r.status == 401 and "expired" in (await r.json())["error"]["message"]
    finally:
        await rt.close()
