"""Errors a person meets in the console come inside the console: the layout with the nav, the
message, a way back. Programs keep theirs: JSON under /api and for tokens, plain text otherwise."""

from __future__ import annotations

import re

from tests.console.conftest import add_mention, bot_token, login

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def nav(page: str) -> list[str]:
    match = re.search(r"<nav>(.*?)</nav>", page, re.DOTALL)
    return re.findall(r'href="([^"]+)"', match.group(1)) if match else []


async def test_a_role_refusal_is_a_page_of_the_console_with_a_way_back(app_client):
    await login(app_client, "alice")
    r = await app_client.get("/moderation", headers=HTML)
    page = await r.text()
    assert r.status == 403 and r.content_type == "text/html"
    assert "<h1>403 Forbidden</h1>" in page and "role agent may not do this" in page
    assert "/queue" in nav(page) and "/moderation" not in nav(page)  # the nav of the signed-in agent
    assert '<a href="/queue">Your start page</a>' in page


async def test_a_refused_form_links_back_to_the_page_it_came_from(app_client, runtime):
    m = await add_mention(runtime, "hello")
    csrf = await login(app_client, "alice")
    r = await app_client.post(f"/conversations/{m.conversation_id}/report", headers=HTML,
                              data={"csrf_token": csrf, "note": "abuse", "mention_id": "not-a-number"})
    page = await r.text()
    assert r.status == 400 and "mention_id must be an integer" in page
    assert f'<a href="/conversations/{m.conversation_id}">Back to the conversation</a>' in page
    r = await app_client.get(f"/conversations/{m.conversation_id}/reply", headers=HTML)  # a reloaded POST address
    assert r.status == 405 and r.headers["Allow"] == "POST" and "Back to the conversation" in await r.text()


async def test_unknown_pages_are_shown_in_the_layout_and_anonymous_people_are_offered_to_sign_in(app_client):
    r = await app_client.get("/no/such/page", headers=HTML)
    page = await r.text()
    assert r.status == 404 and "<h1>404 Not Found</h1>" in page and '<a href="/login">Sign in</a>' in page
    assert nav(page) == []  # nothing to offer before signing in


async def test_programs_keep_their_json_and_plain_errors(app_client, runtime):
    await login(app_client, "alice")
    r = await app_client.get("/api/v1/mentions/99999999", headers=HTML)  # the API, even asked for HTML
    assert r.status == 404 and (await r.json())["error"]["status"] == 404
    token = await bot_token(runtime, "alice", ["mentions:read"])
    r = await app_client.get("/queue", headers={**HTML, "Authorization": f"Bearer {token}"})
    assert r.status == 403 and "<html" not in await r.text()  # a token on a console page: no page for it
    r = await app_client.get("/moderation")  # a client that did not ask for HTML
    assert r.status == 403 and (await r.text()) == "403: role agent may not do this"
