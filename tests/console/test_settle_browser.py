"""In a real browser: an agent meets replies that may or may not have been posted on the conversation
page and settles them there (one found posted, its address pasted; one sent again)."""

from __future__ import annotations

import pytest

from models import Reply
from tests.browser.conftest import ARGS, CHROMIUM, shot, signed_in
from tests.console import browser_support
from tests.console.conftest import add_mention
from tests.console.settle_support import X_REPLY, unknown_reply

pytestmark = [pytest.mark.browser]
served = browser_support.served  # the fixture


async def test_an_agent_settles_interrupted_replies_from_the_conversation(served):
    from playwright.async_api import async_playwright, expect

    rt = served.runtime
    m = await add_mention(rt, "charged twice for March", handle="dana")
    posted = await unknown_reply(rt, m, "Hi Dana, refunded today.")
    again = await unknown_reply(rt, m, "Hi Dana, one more thing: the refund takes 3 days.")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        context, page = await signed_in(browser, served, "alice")
        await page.goto(f"/conversations/{m.conversation_id}")
        first = page.locator(f'article[data-reply-id="{posted}"]')
        await expect(first).to_contain_text("May or may not have been posted: check on X")
        await expect(first.get_by_role("link", name="the post it answers")).to_have_attribute("href", m.url)
        await page.screenshot(path=shot("settle-unknown-replies"), full_page=True)
        await first.get_by_label("The reply's id or address on X").fill(X_REPLY)
        await first.get_by_role("button", name="It was posted").click()
        await expect(page.locator("p.notice")).to_contain_text("Recorded as posted on X (id 1790000000000000001).")
        await expect(first).not_to_contain_text("May or may not")
        second = page.locator(f'article[data-reply-id="{again}"]')
        await second.get_by_role("button", name="It was not posted — send it again").click()
        await expect(page.locator("p.notice")).to_contain_text("Recorded again (dry run")
        await expect(page.locator(".unknown-send")).to_have_count(0)
        await context.close()
        await browser.close()
    async with rt.db.session() as s:
        assert [(await s.get(Reply, i)).status for i in (posted, again)] == ["sent", "dry_run"]
