"""In a real browser (Debian's Chromium), what the care team's pages do in JavaScript: `e` asks before
resolving a conversation we never answered and the queue then names it, a take-over gives back the
reply being written, rows that arrived stay marked new until the agent looks at them, a long
template line wraps at 1366 px instead of widening the page, an incident's banner appears on the live
queue, an admin's nav is one row at 1366 px, and a chat line sent live says when and where."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from console.events import EVENTS
from models import Case, Conversation, Incident, IncidentMention, Reply, Template, User
from tests.browser.conftest import ARGS, CHROMIUM, shot
from tests.console import browser_support
from tests.console.conftest import PASSWORDS, add_mention

pytestmark = [pytest.mark.browser]
served = browser_support.served  # the fixture
LAPTOP = {"width": 1366, "height": 768}


@pytest.fixture
async def chromium():
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield browser
        await browser.close()


async def sign_in(browser, served, user: str):
    context = await browser.new_context(base_url=served.base, viewport=LAPTOP)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    await page.goto("/login")
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", PASSWORDS[user])
    async with page.expect_navigation():
        await page.click("button[type=submit]")
    return page


async def status(runtime, conv_id: int) -> str:
    async with runtime.db.session() as s:
        return (await s.get(Conversation, conv_id)).status


async def test_e_asks_before_resolving_a_conversation_we_never_answered_and_the_queue_names_it(served, chromium):
    from playwright.async_api import expect

    rt = served.runtime
    quiet = await add_mention(rt, "hello? is anyone there", handle="dana")
    answered = await add_mention(rt, "my invoice is wrong", handle="eve")
    async with rt.db.session() as s:
        s.add(Reply(dedup_key="t:answered", mention_id=answered.id, conversation_id=answered.conversation_id,
                    platform="x", visibility="public", kind="agent", text="Fixed it", status="sent",
                    sent_by="session:alice"))
        await s.commit()
    page = await sign_in(chromium, served, "alice")
    asked: list[str] = []

    async def no(dialog):
        asked.append(dialog.message)
        await dialog.dismiss()

    await page.goto(f"/conversations/{quiet.conversation_id}")
    page.once("dialog", no)
    await page.keyboard.press("e")
    for _ in range(100):  # the dialog is handled as the page shows it
        if asked:
            break
        await page.wait_for_timeout(50)
    assert f"Resolve conversation {quiet.conversation_id}?" in asked[0] and "not replied" in asked[0]
    await page.wait_for_timeout(300)
    assert page.url.endswith(f"/conversations/{quiet.conversation_id}")
    assert await status(rt, quiet.conversation_id) == "open"  # said no: nothing happened

    page.once("dialog", lambda dialog: dialog.accept())
    await page.keyboard.press("e")
    await page.wait_for_url(re.compile(r"/queue$"))
    notice = page.locator("#queue-notice")
    await expect(notice).to_contain_text(f"Conversation {quiet.conversation_id} with dana resolved.")
    await page.screenshot(path=shot("queue-resolved-notice"))
    await page.get_by_role("button", name="Reopen it").click()  # the undo
    await page.wait_for_url(re.compile(rf"/conversations/{quiet.conversation_id}$"))
    assert await status(rt, quiet.conversation_id) == "open"

    page.on("dialog", no)  # answered: resolved at once, nothing asked
    await page.goto(f"/conversations/{answered.conversation_id}")
    await page.keyboard.press("e")
    await page.wait_for_url(re.compile(r"/queue$"))
    assert len(asked) == 1 and await status(rt, answered.conversation_id) == "resolved"


async def test_taking_over_keeps_the_reply_being_written_in_the_box_unsent(served, chromium):
    from playwright.async_api import expect

    rt = served.runtime
    m = await add_mention(rt, "my order never came", handle="dana")
    cid = m.conversation_id
    async with rt.db.session() as s:  # alice is working on it
        alice = await s.scalar(select(User.id).where(User.username == "alice"))
        await s.execute(update(Conversation).where(Conversation.id == cid)
                        .values(claimed_by=alice, claimed_at=datetime.now(UTC)))
        await s.commit()
    page = await sign_in(chromium, served, "bob")
    await page.goto(f"/conversations/{cid}")
    editor = page.locator("#reply-text")
    await editor.fill("Hi Dana, your parcel left the depot this morning.")
    async with page.expect_navigation():
        await editor.press("Control+Enter")
    await expect(page.locator("p.error")).to_contain_text("alice is working on this conversation; your reply was not sent.")
    await expect(editor).to_have_value("Hi Dana, your parcel left the depot this morning.")
    await editor.press("End")
    await editor.type(" Sorry for the wait!")  # still writing when taking over
    async with page.expect_navigation():
        await page.locator("#take-over").click()
    await expect(page.locator(".claimed.mine")).to_be_visible()
    await expect(page.locator("#reply-text")).to_have_value(
        "Hi Dana, your parcel left the depot this morning. Sorry for the wait!")
    await expect(page.locator("p.notice")).to_contain_text("Your reply was not sent yet")
    await page.screenshot(path=shot("take-over-keeps-draft"), full_page=True)
    async with rt.db.session() as s:
        assert (await s.scalars(select(Reply).where(Reply.conversation_id == cid))).all() == []


async def test_rows_that_arrive_stay_marked_new_through_refreshes_until_the_agent_looks(served, chromium):
    from playwright.async_api import expect

    rt, hub = served.runtime, served.app[EVENTS]
    await add_mention(rt, "waiting since this morning", platform="qtest")
    page = await sign_in(chromium, served, "alice")
    await page.goto("/queue?channel=qtest")
    await expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))

    def row(m):
        return page.locator(f'tr.item[data-conversation-id="{m.conversation_id}"]')

    new = re.compile(r"\bnew\b")
    first = await add_mention(rt, "the app logs me out", platform="qtest")
    hub("routed", [first.id])
    await expect(row(first)).to_have_class(new)
    second = await add_mention(rt, "cannot download songs", platform="qtest")
    hub("routed", [second.id])
    await expect(row(second)).to_have_class(new)  # a second refresh came
    await expect(row(first)).to_have_class(new)  # and the first arrival is still marked: not looked at yet
    await page.screenshot(path=shot("queue-new-rows"))
    await row(first).locator("td").first.click()  # the agent looks at it
    await expect(row(first)).not_to_have_class(new)
    third = await add_mention(rt, "billing page is blank", platform="qtest")
    hub("routed", [third.id])
    await expect(row(third)).to_have_class(new)
    await expect(row(first)).not_to_have_class(new)  # seen stays seen
    await expect(row(second)).to_have_class(new)


async def test_a_template_with_a_long_line_wraps_at_1366_px(served, chromium):
    rt = served.runtime
    body = ("Hi {{ author_name }}, this private link connects you to our team. It works once and expires in "
            "{{ ttl_hours | default(24) }} hours: {{ secure_link }} We'll never ask for your password or codes. "
            "https://help.acme.example/articles/" + "a-very-long-article-slug-" * 8)
    async with rt.db.session() as s:
        s.add(Template(name="secure_link_dm", issue_types=[], channel="any", variants={"friendly": body}))
        await s.commit()
    for user in ("alice", "mia"):  # the read-only view of a reserved template, for an agent and marketing
        page = await sign_in(chromium, served, user)
        await page.goto("/knowledge/templates/secure_link_dm")
        assert await page.locator("pre").count() == 1, user
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= LAPTOP["width"], (user, width)
        await page.screenshot(path=shot(f"template-1366-{user}"), full_page=True)


async def test_an_incident_opening_shows_its_banner_on_the_live_queue(served, chromium):
    from playwright.async_api import expect

    rt, hub = served.runtime, served.app[EVENTS]
    page = await sign_in(chromium, served, "alice")
    await page.goto("/queue")
    await expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))
    assert await page.locator(".incident-banner").count() == 0
    report = await add_mention(rt, "app is down for everyone", issue_type="outage", outcome="auto_answer")
    async with rt.db.session() as s:
        incident = Incident(dedup_key="outage:x:browser", issue_type="outage", channel="x",
                            title="Spike of outage reports on x", opened_at=report.created_at)
        s.add(incident)
        await s.flush()
        s.add(IncidentMention(incident_id=incident.id, mention_id=report.id))
        await s.commit()
    hub("routed", [report.id])  # the route stage tells the live pages
    banner = page.locator(f'.incident-banner[data-incident-id="{incident.id}"]')
    await expect(banner).to_contain_text("no status sent yet")
    await expect(banner.get_by_role("link")).to_have_attribute("href", f"/incidents/{incident.id}")
    await page.screenshot(path=shot("queue-incident-banner"))


async def test_an_admins_nav_fits_on_one_line_at_1366_px(served, chromium):
    """Eleven pages for an admin: the header stays one row, nothing wider than the window."""
    page = await sign_in(chromium, served, "root")
    await page.goto("/admin/users")
    links = page.locator("header nav a")
    assert await links.count() == 11
    tops = await links.evaluate_all("els => els.map(e => Math.round(e.getBoundingClientRect().top))")
    assert len(set(tops)) == 1, tops
    signed_in = await page.locator("header .logout").evaluate("e => Math.round(e.getBoundingClientRect().top)")
    header = await page.locator("header").evaluate("e => e.getBoundingClientRect().height")
    assert header < 60 and abs(signed_in - tops[0]) < 20, (header, signed_in, tops)
    assert await page.evaluate("document.documentElement.scrollWidth") <= LAPTOP["width"]
    await page.screenshot(path=shot("admin-nav-1366"))


async def test_a_chat_message_sent_live_says_when_and_that_it_was_the_secure_chat(served, chromium):
    from playwright.async_api import expect

    rt = served.runtime
    m = await add_mention(rt, "someone changed my password", handle="pat_b", outcome="escalate_private",
                          sensitivity="account")
    async with rt.db.session() as s:
        alice = await s.scalar(select(User.id).where(User.username == "alice"))
        case = Case(conversation_id=m.conversation_id, author_id=m.author_id, opened_by_mention_id=m.id,
                    category="account", assigned_to=alice)
        s.add(case)
        await s.commit()
    page = await sign_in(chromium, served, "alice")
    await page.goto(f"/cases/{case.id}")
    await expect(page.locator("#chat")).to_have_attribute("data-state", "open")
    await page.locator("#chat-input").fill("Hi Pat, I'm looking into it")
    await page.locator("#chat-form button[type=submit]").click()
    where = page.locator("#chat li", has_text="I'm looking into it").locator(".where")
    await expect(where).to_have_text(re.compile(r"^\d\d:\d\d UTC · secure chat$"))
    assert await where.locator("time").get_attribute("datetime")
