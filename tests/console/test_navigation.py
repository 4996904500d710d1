"""Each role sees the pages it may open, and lands on its own page after signing in."""

from __future__ import annotations

import re

from tests.console.conftest import PASSWORDS
from tests.console.test_roles import ACCESS


def nav(page: str) -> list[str]:
    match = re.search(r"<nav>(.*?)</nav>", page, re.DOTALL)
    return re.findall(r'href="([^"]+)"', match.group(1)) if match else []


async def _sign_in(client, user: str, next_: str | None = None):
    data = {"username": user, "password": PASSWORDS[user]}
    if next_ is not None:
        data["next"] = next_
    return await client.post("/login", data=data, allow_redirects=False)


async def test_each_role_lands_on_its_own_page_unless_it_asked_for_another(app_client):
    from tests.console.conftest import Browser

    base = str(app_client.make_url("/")).rstrip("/") + "/"
    for user, home in (("alice", "/queue"), ("mod", "/moderation"), ("mia", "/digest"), ("root", "/queue")):
        b = Browser(base)
        try:
            r = await _sign_in(b.session, user)
            assert (r.status, r.headers["Location"]) == (302, home), user
            r = await b.get("/", allow_redirects=False)
            assert r.headers["Location"] == home
            assert (await b.get(home, allow_redirects=False)).status == 200  # and may open it
        finally:
            await b.session.close()
    r = await _sign_in(app_client, "mod", "/mentions?outcome=moderate")
    assert r.headers["Location"] == "/mentions?outcome=moderate"
    r = await _sign_in(app_client, "mod", "//evil.example/")
    assert r.headers["Location"] == "/moderation"  # never off the site
    page = await (await app_client.get("/login?next=/cases")).text()
    assert 'name="next" value="/cases"' in page


async def test_the_nav_shows_only_the_pages_the_role_may_open(app_client):
    from tests.console.conftest import Browser

    base = str(app_client.make_url("/")).rstrip("/") + "/"
    for user, role in (("alice", "agent"), ("mod", "moderator"), ("mia", "marketing"), ("root", "admin")):
        b = Browser(base)
        try:
            await _sign_in(b.session, user)
            links = nav(await (await b.get("/service-metrics")).text())
        finally:
            await b.session.close()
        expected = [path for path in links if role == "admin" or role in ACCESS[("GET", path)][0]]
        assert links == expected and links, (user, links)
        assert ("/queue" in links) == (role in ("agent", "admin"))
        assert ("/moderation" in links) == (role in ("moderator", "admin"))
        assert ("/admin/users" in links) == (role == "admin")
