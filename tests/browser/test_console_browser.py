"""The console in a real browser: an agent's, a moderator's and a marketer's everyday work."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from listener.protocol import NormalizedMention
from models import Case, Mention, ModerationAction, Reply
from tests.browser.conftest import shot, signed_in

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


def mention(external_id: str, text: str, handle: str) -> NormalizedMention:
    return NormalizedMention(platform="x", external_id=external_id, text=text, created_at=datetime.now(UTC),
                             author_id=f"id-{handle}", author_handle=handle, author_name=handle.title())


async def routed(server, external_id: str) -> tuple[int, int]:
    await server.runtime.pipeline.wait_idle(timeout=30)
    async with server.runtime.db.session() as s:
        m = await s.scalar(select(Mention).where(Mention.external_id == external_id))
    return m.id, m.conversation_id


async def test_an_agent_sees_a_mention_arrive_claims_it_replies_and_takes_another_private(browser, server):
    from playwright.async_api import expect

    context, page = await signed_in(browser, server, "alice")
    await expect(page).to_have_url(re.compile(r"/queue$"))
    await expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))  # the event stream is open
    await server.runtime.submit([mention("b-1", "The app crashes every time I open settings on Android, please fix",
                                         "crashy")])
    row = page.locator("tr.item", has_text="crashes every time I open settings")
    await expect(row).to_be_visible(timeout=30_000)  # arrived without a reload
    await expect(row).to_have_class(re.compile(r"\bnew\b"))
    await page.screenshot(path=shot("queue-live"), full_page=True)

    await row.get_by_role("link").click()
    await page.wait_for_url(re.compile(r"/conversations/\d+$"))  # the key must reach the new page's handler
    await page.wait_for_load_state("load")
    await page.keyboard.press("c")  # claim
    await expect(page.locator(".claimed.mine")).to_be_visible()
    await page.keyboard.press("1")  # the first suggestion into the editor
    editor = page.locator("#reply-text")
    await expect(editor).to_have_value(re.compile(r"^Thanks .*fix is on its way\.$"))
    await editor.press("End")
    await editor.type(" Sorry for the trouble!")
    await page.screenshot(path=shot("conversation-draft"), full_page=True)
    await editor.press("Control+Enter")
    await expect(page.locator("article.reply", has_text="Sorry for the trouble!")).to_be_visible()
    _, cid = await routed(server, "b-1")
    async with server.runtime.db.session() as s:
        reply = await s.scalar(select(Reply).where(Reply.conversation_id == cid, Reply.kind == "agent"))
    assert reply.sent_by == "session:alice" and reply.template == "bug_ack" and reply.status == "dry_run"

    await server.runtime.submit([mention("b-2", "Bug: my invoice PDF shows the wrong billing address", "worried")])
    mid2, cid2 = await routed(server, "b-2")
    await page.goto(f"/conversations/{cid2}")
    page.once("dialog", lambda d: d.accept())
    await page.keyboard.press("p")  # take private (confirmed)
    await page.wait_for_url(re.compile(r"case=\d+"))
    await expect(page.locator(".customer")).to_contain_text("Case #")
    await page.screenshot(path=shot("taken-private"), full_page=True)
    async with server.runtime.db.session() as s:
        case = await s.scalar(select(Case).where(Case.opened_by_mention_id == mid2))
    assert case is not None and case.category == "agent"
    await context.close()


async def test_a_moderator_removes_a_held_post_and_bulk_approves_the_rest(browser, server):
    from playwright.async_api import expect

    await server.runtime.submit([
        mention("s-1", "FREE FOLLOWERS!!! click bit.ly/xxxx buy cheap followers now", "spambot"),
        mention("s-2", "WIN A FREE iPhone!!! click bit.ly/yyyy claim your prize now", "spambot2"),
        mention("s-3", "cheap followers and likes!!! visit bit.ly/zzzz for instant fame", "spambot3"),
    ])
    mids = {ext: (await routed(server, ext))[0] for ext in ("s-1", "s-2", "s-3")}
    context, page = await signed_in(browser, server, "mod")
    await page.goto("/moderation")
    row = page.locator("tr[data-action-id]", has_text="FREE FOLLOWERS")
    await expect(row).to_be_visible()
    await expect(page.locator("tr[data-action-id]", has_text="WIN A FREE iPhone")).to_be_visible()
    await page.screenshot(path=shot("moderation-queue"), full_page=True)
    await row.get_by_placeholder(re.compile("Reason sent to the author")).fill("No selling followers here.")
    await row.get_by_role("button", name="Remove").click()
    await page.wait_for_url(re.compile(r"/moderation$"))
    await expect(page.locator("tr[data-action-id]", has_text="FREE FOLLOWERS")).to_have_count(0)

    await page.locator("#select-all").check()  # the rest at once
    await page.locator("#bulk select[name=decision]").select_option("approve")
    await page.get_by_role("button", name="Apply to selected").click()
    await expect(page.get_by_role("status")).to_contain_text("2 reviewed")
    await expect(page.locator("tbody").first).to_contain_text("Nothing waits for review.")
    async with server.runtime.db.session() as s:
        removed = list(await s.scalars(select(ModerationAction).where(ModerationAction.mention_id == mids["s-1"],
                                                                      ModerationAction.action == "remove")))
        approved = set(await s.scalars(select(ModerationAction.mention_id).where(
            ModerationAction.action == "approve", ModerationAction.mention_id.in_([mids["s-2"], mids["s-3"]]))))
        notice = await s.scalar(select(Reply).where(Reply.mention_id == mids["s-1"], Reply.kind == "notice"))
    assert [a.actor for a in removed] == ["session:mod"] and removed[0].reason == "No selling followers here."
    assert approved == {mids["s-2"], mids["s-3"]}
    assert notice is not None and "No selling followers here." in notice.text and notice.visibility == "private"
    await context.close()


async def test_marketing_opens_the_digest_and_its_charts_render(browser, server):
    from playwright.async_api import expect

    context, page = await signed_in(browser, server, "mia")
    await page.goto("/digest?period=day")
    images = page.locator(".chart img")
    await expect(images).to_have_count(3)
    for i in range(3):
        width = await images.nth(i).evaluate("img => img.complete ? img.naturalWidth : 0")
        assert width > 300  # decoded: a real image, not a broken icon
    await expect(page.locator(".digest")).to_contain_text("Volume per channel")
    await page.screenshot(path=shot("digest"), full_page=True)
    async with page.expect_download() as download:
        await page.click("#csv")
    path = await (await download.value).path()
    assert Path(path).read_text(encoding="utf-8").startswith("section,key")
    await context.close()


async def test_an_agent_tags_with_t_and_resolves_with_e(browser, server):
    from playwright.async_api import expect

    from models import Conversation

    await server.runtime.submit([mention("k-1", "Where is my order? It was due on Monday", "waiting")])
    _, cid = await routed(server, "k-1")
    context, page = await signed_in(browser, server, "alice")
    await page.goto(f"/conversations/{cid}")
    await page.keyboard.press("t")  # focuses the tags field (the key itself is not typed)
    tags = page.locator("#tags")
    await expect(tags).to_be_focused()
    await expect(tags).to_have_value("")
    await page.keyboard.type("shipping, late")
    async with page.expect_navigation():  # the form's submit loads a new page: wait for it, not the old one
        await page.keyboard.press("Enter")
    await expect(page.locator("#tags")).to_have_value("shipping, late")
    await page.screenshot(path=shot("conversation-tagged"), full_page=True)
    page.once("dialog", lambda d: d.accept())  # nobody replied to it: resolving is asked first
    await page.keyboard.press("e")  # resolve: back to the queue, without this conversation
    await page.wait_for_url(re.compile(r"/queue$"))
    await expect(page.locator(f'tr.item[data-conversation-id="{cid}"]')).to_have_count(0)
    await expect(page.locator("#queue-notice")).to_contain_text(f"Conversation {cid} with waiting resolved.")
    async with server.runtime.db.session() as s:
        conv = await s.get(Conversation, cid)
    assert conv.tags == ["shipping", "late"] and conv.status == "resolved"
    await context.close()


async def test_an_agent_reports_a_post_and_a_moderator_escalates_it_and_bans_a_spammer(browser, server):
    from playwright.async_api import expect

    from models import Author

    await server.runtime.submit([
        mention("r-1", "The real support team said to message acme_refunds_desk on Telegram for your money back", "impostor"),
        mention("r-2", "FREE FOLLOWERS and likes!!! click bit.ly/wwww buy cheap followers today", "spambot4"),
    ])
    reported_id, reported_cid = await routed(server, "r-1")
    spam_id, _ = await routed(server, "r-2")
    agent, page = await signed_in(browser, server, "alice")
    await page.goto(f"/conversations/{reported_cid}")
    await page.locator("details.report summary").first.click()
    await page.get_by_label(re.compile("Note for the moderators")).fill("Impersonates our support: a scam")
    await page.get_by_role("button", name="Report to moderators").click()
    await expect(page.get_by_role("status").filter(has_text="Held for the moderators")).to_be_visible()
    await agent.close()

    context, page = await signed_in(browser, server, "mod")
    await page.goto("/moderation")
    reported = page.locator("tr.reported", has_text="acme_refunds_desk")
    await expect(reported).to_contain_text("Reported by alice")
    await expect(reported).to_contain_text("Impersonates our support: a scam")
    spam = page.locator("tr[data-action-id]", has_text="FREE FOLLOWERS and likes")
    await expect(spam).to_be_visible()
    await page.screenshot(path=shot("moderation-reported"), full_page=True)

    await spam.get_by_placeholder(re.compile("Reason sent to the author")).fill("Spam accounts are banned.")
    await spam.get_by_role("button", name="Ban").click()
    await page.wait_for_url(re.compile(r"/moderation$"))
    await expect(page.locator("tr[data-action-id]", has_text="FREE FOLLOWERS and likes")).to_have_count(0)
    await page.locator("tr.reported", has_text="acme_refunds_desk").get_by_role("button", name="Escalate").click()
    await page.wait_for_url(re.compile(r"/moderation$"))
    await expect(page.locator("tr.reported", has_text="acme_refunds_desk")).to_have_count(0)
    await page.screenshot(path=shot("moderation-after-ban-and-escalate"), full_page=True)
    async with server.runtime.db.session() as s:
        acts = {(a.mention_id, a.action): a for a in await s.scalars(select(ModerationAction).where(
            ModerationAction.mention_id.in_([reported_id, spam_id])))}
        spammer = await s.scalar(select(Author).join(Mention, Mention.author_id == Author.id)
                                 .where(Mention.id == spam_id))
        case = await s.scalar(select(Case).where(Case.opened_by_mention_id == reported_id))
    hold = acts[(reported_id, "hold")]
    assert (hold.rule, hold.actor, hold.reason, hold.status) == ("reported", "session:alice",
                                                                 "Impersonates our support: a scam", "reviewed")
    assert hold.details["decision"] == "escalate" and case is not None
    assert spammer.banned and acts[(spam_id, "ban")].actor == "session:mod"
    assert acts[(spam_id, "ban")].reason == "Spam accounts are banned."
    await context.close()


async def test_reply_to_picks_the_person_the_panel_shows_and_the_post_taken_private(browser, server):
    """A Reddit thread with a customer and a helper: choosing the customer's post in "Reply to" moves
    the side panel to her, and "p" takes her post private, not the helper's."""
    from playwright.async_api import expect

    from models import Customer
    from tests.console.conftest import add_mention

    async with server.runtime.db.session() as s:
        s.add(Customer(name="Kim Browser", plan="family"))
        await s.commit()
        cust = await s.scalar(select(Customer.id).where(Customer.name == "Kim Browser"))
    kim = await add_mention(server.runtime, "my internet drops every night", platform="reddit", handle="kim_b",
                            customer_id=cust, created_at=datetime.now(UTC) - timedelta(minutes=9))
    hal = await add_mention(server.runtime, "restart the router, works for me", platform="reddit",
                            handle="hal_b", conversation_id=kim.conversation_id,
                            created_at=datetime.now(UTC) - timedelta(minutes=3))
    context, page = await signed_in(browser, server, "alice")
    await page.goto(f"/conversations/{kim.conversation_id}")
    panel = page.locator("section.customer")
    await expect(panel).to_contain_text("Answering hal_b on reddit")
    await page.select_option("#reply-to", str(kim.id))
    await expect(panel).to_contain_text("Answering kim_b on reddit")
    await expect(panel).to_contain_text("Kim Browser")
    await expect(page).to_have_url(re.compile(rf"\?mention={kim.id}$"))
    await page.screenshot(path=shot("reply-to-customer"), full_page=True)
    await page.locator("h1").click()  # the keys work outside the form fields
    page.once("dialog", lambda d: d.accept())
    await page.keyboard.press("p")
    await page.wait_for_url(re.compile(r"case=\d+"))
    async with server.runtime.db.session() as s:
        opened = set(await s.scalars(select(Case.opened_by_mention_id).where(
            Case.opened_by_mention_id.in_([kim.id, hal.id]))))
    assert opened == {kim.id}
    await context.close()


async def test_a_case_chat_keeps_the_text_the_server_refused(browser, server):
    """Bob takes over Alice's case while she writes: her page says so, and what she sends after it
    stays in the box instead of vanishing."""
    from playwright.async_api import expect

    from models import User
    from tests.console.conftest import add_mention

    m = await add_mention(server.runtime, "someone changed my password", handle="pat_b", outcome="escalate_private",
                          sensitivity="account")
    async with server.runtime.db.session() as s:
        alice = await s.scalar(select(User.id).where(User.username == "alice"))
        case = Case(conversation_id=m.conversation_id, author_id=m.author_id, opened_by_mention_id=m.id,
                    category="account", assigned_to=alice)
        s.add(case)
        await s.commit()
        case_id = case.id
    context, page = await signed_in(browser, server, "alice")
    await page.goto(f"/cases/{case_id}")
    await expect(page.locator("#chat")).to_have_attribute("data-state", "open")
    box = page.locator("#chat-input")
    await box.fill("Hi Pat, I'm looking into it")
    await page.locator("#chat-form button[type=submit]").click()
    await expect(page.locator("#chat li", has_text="I'm looking into it")).to_be_visible()
    await expect(box).to_have_value("")  # stored: the box is cleared

    bob_context, bob = await signed_in(browser, server, "bob")
    await bob.goto(f"/cases/{case_id}")
    await bob.get_by_role("button", name="Take over from alice").click()
    await expect(bob.locator("#case-agent")).to_have_text("bob")
    await expect(page.locator("#case-agent")).to_have_text("bob")  # alice's open page is told
    await expect(page.locator("#chat-status")).to_contain_text("bob took over this case")

    await box.fill("Could you confirm your e-mail address?")
    await page.locator("#chat-form button[type=submit]").click()
    await expect(page.locator("#chat-status")).to_contain_text("another agent is assigned to this case")
    await expect(box).to_have_value("Could you confirm your e-mail address?")
    await page.screenshot(path=shot("case-chat-refused"), full_page=True)
    await bob_context.close()
    await context.close()


async def test_the_queue_keeps_the_selected_conversation_through_a_live_refresh(browser, server):
    from playwright.async_api import expect

    from tests.console.conftest import add_mention

    now = datetime.now(UTC)
    first = await add_mention(server.runtime, "first in line", platform="qtest", priority=50,
                              created_at=now - timedelta(minutes=30))
    second = await add_mention(server.runtime, "second in line", platform="qtest", priority=50,
                               created_at=now - timedelta(minutes=20))
    context, page = await signed_in(browser, server, "alice")
    await page.goto("/queue?channel=qtest")
    await expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))
    await page.keyboard.press("j")
    selected = page.locator("tr.item.selected")
    await expect(selected).to_have_attribute("data-conversation-id", str(second.conversation_id))
    urgent = await add_mention(server.runtime, "urgent: everything is broken", platform="qtest", priority=95,
                               created_at=now - timedelta(minutes=1))
    # any change refreshes the live rows: here, another claim
    await page.evaluate("""([cid, csrf]) => fetch(`/conversations/${cid}/claim`, {method: "POST",
        headers: {"X-CSRF-Token": csrf, "Accept": "application/json"}})""",
                        [first.conversation_id, await page.locator("#page").get_attribute("data-csrf")])
    await expect(page.locator("tr.item").first).to_have_attribute("data-conversation-id",
                                                                  str(urgent.conversation_id))
    await expect(selected).to_have_attribute("data-conversation-id", str(second.conversation_id))
    await context.close()


async def test_an_admin_reads_a_dead_letters_payload_redacted_and_discards_it(browser, server):
    from playwright.async_api import expect

    from tests.console.test_deadletters import bury

    bus = server.runtime.bus  # a topic no stage reads: the running pipeline leaves it alone
    await bury(bus, "browser-dl", "x:dl-1", {"text": "reach me at jo.doe@example.com", "mention_id": 1})
    [dead] = await bus.dead_letters("browser-dl")
    context, page = await signed_in(browser, server, "root")
    await page.get_by_role("link", name="Dead letters").click()
    row = page.locator(f'tr[data-deadletter="{dead.id}"]')
    await expect(row).to_contain_text("x:dl-1")
    await expect(page.locator("main")).not_to_contain_text("jo.doe")
    await row.get_by_role("button", name="Show payload").click()
    await expect(page.locator("pre[data-payload]")).to_contain_text("reach me at [email]")
    await page.screenshot(path=shot("deadletter-payload"), full_page=True)
    await page.get_by_role("link", name="Back to the dead letters").click()
    await page.locator(f'tr[data-deadletter="{dead.id}"]').get_by_role("button", name="Discard…").click()
    await expect(page.get_by_role("heading")).to_have_text("Discard 1 dead letter(s)?")
    await page.get_by_role("button", name="Discard 1").click()
    await expect(page.get_by_role("status")).to_contain_text("discarded 1 dead letter(s)")
    await expect(page.locator(f'tr[data-deadletter="{dead.id}"]')).to_have_count(0)
    assert await bus.dead_letters("browser-dl") == []
    await context.close()
