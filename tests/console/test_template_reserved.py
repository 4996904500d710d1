"""Reserved templates (the secure link's DM and notices, incident broadcasts, ...) go out from the
brand's account with nobody reading them first: only an admin changes them, in the console and the API.
Marketing reads the knowledge base, reserved templates included (placeholders, no customer's data),
and changes nothing."""

from __future__ import annotations

import re

from sqlalchemy import select

from models import KnowledgeArticle, Template
from tests.console.conftest import bot_token, login

DM = "Hi {{ author_name }}, your private link: {{ secure_link }}"
LEAKY = DM + "{{ ' ' ~ secure_link|replace('/', ' ') }}"


async def _seed(runtime) -> None:
    async with runtime.db.session() as s:
        s.add_all([Template(name="secure_link_dm", issue_types=[], channel="any", variants={"friendly": DM}),
                   Template(name="outage_status", issue_types=[], channel="any",
                            variants={"friendly": "We know: {{ status_message }}"})])
        await s.commit()


async def _body(runtime, name: str) -> dict:
    async with runtime.db.session() as s:
        return await s.scalar(select(Template.variants).where(Template.name == name))


async def test_only_an_admin_changes_a_reserved_template_in_the_console(app_client, runtime, second_browser):
    await _seed(runtime)
    for user in ("alice", "mod"):
        csrf = await login(second_browser, user)
        page = await (await second_browser.get("/knowledge/templates/secure_link_dm")).text()
        assert "Reserved" in page and 'action="/knowledge/templates/secure_link_dm"' not in page
        for name in ("secure_link_dm", "outage_status"):
            r = await second_browser.post(f"/knowledge/templates/{name}", allow_redirects=False,
                                          data={"csrf_token": csrf, "tone:friendly": LEAKY, "issue_types": ""})
            assert r.status == 403, (user, name)
        await second_browser.post("/logout", data={"csrf_token": csrf})
    assert await _body(runtime, "secure_link_dm") == {"friendly": DM}
    csrf = await login(app_client, "root")
    page = await (await app_client.get("/knowledge/templates/secure_link_dm")).text()
    assert 'action="/knowledge/templates/secure_link_dm"' in page
    leaky = await app_client.post("/knowledge/templates/secure_link_dm", allow_redirects=False,
                                  data={"csrf_token": csrf, "tone:friendly": LEAKY, "issue_types": ""})
    assert leaky.status == 400  # even an admin's DM must show the link once, untouched
    ok = await app_client.post("/knowledge/templates/secure_link_dm", allow_redirects=False,
                               data={"csrf_token": csrf, "tone:friendly": DM + " Thanks!", "issue_types": ""})
    assert ok.status == 303 and await _body(runtime, "secure_link_dm") == {"friendly": DM + " Thanks!"}


async def test_only_an_admins_token_changes_a_reserved_template_in_the_api(app_client, runtime):
    await _seed(runtime)
    agent = {"Authorization": "Bearer " + await bot_token(runtime, "alice", ["templates:write", "templates:read"])}
    tries = [("PUT", "/api/v1/templates/secure_link_dm", {"variants": {"friendly": LEAKY}}),
             ("DELETE", "/api/v1/templates/outage_status", None),
             ("POST", "/api/v1/templates", {"name": "secure_link_notice", "variants": {"friendly": "Go to evil.example"}}),
             ("POST", "/api/v1/templates", {"name": "case_closed_public", "variants": {"friendly": "Bye"}})]
    for method, path, body in tries:
        r = await app_client.request(method, path, headers=agent, json=body)
        assert r.status == 403, (method, path)
        assert (await r.json())["error"]["status"] == 403
    assert await _body(runtime, "secure_link_dm") == {"friendly": DM}
    assert await _body(runtime, "outage_status") is not None and await _body(runtime, "secure_link_notice") is None
    assert (await app_client.get("/api/v1/templates/secure_link_dm", headers=agent)).status == 200  # reading is fine
    # an ordinary template is still the agents' to manage
    made = await app_client.post("/api/v1/templates", headers=agent, json={"name": "refund_help",
                                                                           "variants": {"friendly": "Sorry!"}})
    assert made.status == 201
    admin = {"Authorization": "Bearer " + await bot_token(runtime, "root", ["templates:write"])}
    leaky = await app_client.put("/api/v1/templates/secure_link_dm", headers=admin, json={"variants": {"friendly": LEAKY}})
    assert leaky.status == 422 and "secure_link" in (await leaky.json())["error"]["message"]
    ok = await app_client.put("/api/v1/templates/secure_link_dm", headers=admin,
                              json={"variants": {"friendly": DM + " Thanks!"}})
    assert ok.status == 200 and await _body(runtime, "secure_link_dm") == {"friendly": DM + " Thanks!"}


async def test_marketing_opens_every_article_and_template_the_knowledge_page_links_and_changes_none(
        app_client, runtime):
    await _seed(runtime)
    async with runtime.db.session() as s:
        s.add(KnowledgeArticle(slug="reset-password", title="Reset your password", url="https://help.example/r",
                               body="Open Settings > Account > Password.", issue_types=["account_access"]))
        await s.commit()
    csrf = await login(app_client, "mia")
    page = await (await app_client.get("/knowledge")).text()
    links = re.findall(r'href="(/knowledge/(?:articles|templates)/[^"]+)"', page)
    assert sorted(links) == ["/knowledge/articles/reset-password", "/knowledge/templates/outage_status",
                             "/knowledge/templates/secure_link_dm"]
    for link in links:
        r = await app_client.get(link)
        html = await r.text()
        assert r.status == 200 and "<form method=\"post\" action=\"/knowledge/" not in html, link
    article = await (await app_client.get("/knowledge/articles/reset-password")).text()
    assert "Open Settings &gt; Account &gt; Password." in article and "<textarea" not in article
    assert "your private link: {{ secure_link }}" in await (await app_client.get(links[-1])).text()
    r = await app_client.post("/knowledge/articles/reset-password", allow_redirects=False,
                              data={"csrf_token": csrf, "title": "x", "body": "y", "issue_types": ""})
    assert r.status == 403
    r = await app_client.post("/knowledge/templates/outage_status", allow_redirects=False,
                              data={"csrf_token": csrf, "tone:friendly": "changed", "issue_types": ""})
    assert r.status == 403 and await _body(runtime, "outage_status") == {"friendly": "We know: {{ status_message }}"}
