"""The conversation view's customer context and suggestions beyond templates.

"Contacted us yesterday about an order that shipped this morning": the agent must see the
customer's earlier cases and the replies they got on every channel, and nothing of another
customer's. Suggestions include knowledge articles and community answers, not only templates.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from models import Case, CaseMessage, Customer, KnowledgeArticle, Reply, RouteDecision, Template
from tests.console.conftest import add_mention, login


def section(html: str, heading: str) -> str:
    """The list under one heading of the customer panel."""
    match = re.search(rf"<h3>{heading}</h3>\s*<ul[^>]*>(.*?)</ul>", html, re.DOTALL)
    assert match, f"no {heading!r} section"
    return match.group(1)


async def _customer(runtime, name: str) -> int:
    async with runtime.db.session() as s:
        c = Customer(name=name, plan="family", attributes={"last_order": "shipped this morning"})
        s.add(c)
        await s.commit()
        return c.id


async def test_earlier_cases_and_replies_on_other_channels_appear_and_no_one_elses(app_client, runtime):
    cust = await _customer(runtime, "Maria Silva")
    stranger = await _customer(runtime, "Sam Other")
    yesterday = datetime.now(UTC) - timedelta(days=1)
    forum = await add_mention(runtime, "my account shows an order I never placed", platform="discourse",
                              handle="maria_forum", customer_id=cust, created_at=yesterday - timedelta(hours=3),
                              outcome="escalate_private", sensitivity="account", issue_type="account_access")
    reddit = await add_mention(runtime, "where is order 1234?", platform="reddit", handle="maria_0",
                               customer_id=cust, created_at=yesterday, outcome="agent_queue",
                               issue_type="order_delivery")
    theirs = await add_mention(runtime, "my own order is late", platform="reddit", handle="sam",
                               customer_id=stranger, created_at=yesterday)
    today = await add_mention(runtime, "still no parcel!!", platform="x", handle="mariasilva", customer_id=cust,
                              issue_type="order_delivery")
    async with runtime.db.session() as s:
        case = Case(conversation_id=forum.conversation_id, customer_id=cust, author_id=forum.author_id,
                    opened_by_mention_id=forum.id, category="account", status="resolved",
                    created_at=yesterday - timedelta(hours=2), resolved_at=yesterday)
        other_case = Case(conversation_id=theirs.conversation_id, customer_id=stranger, author_id=theirs.author_id,
                          opened_by_mention_id=theirs.id, category="fraud", created_at=yesterday)
        s.add_all([case, other_case])
        await s.flush()
        s.add_all([
            CaseMessage(case_id=case.id, sender="customer", body="I did not place order 777"),
            CaseMessage(case_id=case.id, sender="agent", body="Order 777 was cancelled and refunded"),
            CaseMessage(case_id=other_case.id, sender="customer", body="Sam's private problem"),
            Reply(dedup_key="t:r1", mention_id=reddit.id, conversation_id=reddit.conversation_id, platform="reddit",
                  visibility="public", kind="agent", text="Order 1234 ships tomorrow morning", status="sent",
                  sent_by="session:bob", created_at=yesterday + timedelta(minutes=20)),
            Reply(dedup_key="t:r2", mention_id=reddit.id, conversation_id=reddit.conversation_id, platform="reddit",
                  visibility="public", kind="agent", text="A draft nobody sent", status="failed",
                  sent_by="session:bob", created_at=yesterday + timedelta(minutes=25)),
            Reply(dedup_key="t:r3", mention_id=theirs.id, conversation_id=theirs.conversation_id, platform="reddit",
                  visibility="public", kind="agent", text="Sam, your order is on its way", status="sent",
                  sent_by="session:bob", created_at=yesterday),
        ])
        await s.commit()
        case_id, other_case_id = case.id, other_case.id
    await login(app_client, "alice")
    page = await (await app_client.get(f"/conversations/{today.conversation_id}")).text()

    cases = section(page, "Cases")
    assert f"Case #{case_id} · account · resolved" in cases
    assert "Order 777 was cancelled and refunded" in cases  # the latest message of the case
    assert f"Case #{other_case_id}" not in cases and "Sam" not in page

    replies = section(page, "Replies to earlier contacts")
    assert "reddit · agent (sent)" in replies and "Order 1234 ships tomorrow morning" in replies
    assert "A draft nobody sent" not in replies  # a failed reply never reached the customer
    assert "your order is on its way" not in page

    earlier = section(page, "Earlier contacts")
    assert "discourse" in earlier and "reddit" in earlier and "where is order 1234?" in earlier
    assert f'href="/conversations/{reddit.conversation_id}"' in earlier


async def test_a_handle_not_linked_to_a_customer_still_brings_its_own_earlier_case(app_client, runtime):
    first = await add_mention(runtime, "someone changed my password", handle="nolink", sensitivity="security",
                              outcome="escalate_private", created_at=datetime.now(UTC) - timedelta(days=2))
    later = await add_mention(runtime, "are you ignoring me?", handle="nolink")
    async with runtime.db.session() as s:
        s.add(Case(conversation_id=first.conversation_id, author_id=first.author_id, opened_by_mention_id=first.id,
                   category="security"))
        await s.commit()
        case_id = await s.scalar(select(Case.id).where(Case.opened_by_mention_id == first.id))
    await login(app_client, "alice")
    page = await (await app_client.get(f"/conversations/{later.conversation_id}")).text()
    assert "Not linked to a customer record" in page
    assert f"Case #{case_id} · security · open" in section(page, "Cases")


async def test_article_and_community_answer_suggestions_appear_with_the_templates(app_client, runtime):
    m = await add_mention(runtime, "how do I track my parcel?", issue_type="order_delivery", handle="dana")
    async with runtime.db.session() as s:
        s.add_all([
            KnowledgeArticle(slug="tracking", title="Tracking your parcel", body="...",
                             url="https://help.example.invalid/tracking", issue_types=["order_delivery"]),
            KnowledgeArticle(slug="refunds", title="Refunds", body="...", url="https://help.example.invalid/refunds",
                             issue_types=["billing"]),
            Template(name="track_order", issue_types=["order_delivery"], article_slug="tracking",
                     variants={"friendly": "Hi {{ author_name }}, here is how to track it: {{ article_url }}"}),
        ])
        decision = await s.scalar(select(RouteDecision).where(RouteDecision.mention_id == m.id))
        decision.details = {"answer": {"kind": "community", "ref": "discourse:991",
                                       "url": "https://forum.example.invalid/t/tracking/991"}}
        await s.commit()
    await login(app_client, "alice")
    page = await (await app_client.get(f"/conversations/{m.conversation_id}")).text()
    kinds = re.findall(r'<div class="suggestion" data-kind="(\w+)" data-ref="([^"]*)">', page)
    assert ("template", "track_order") in kinds
    assert ("article", "tracking") in kinds and ("article", "refunds") not in kinds  # only for this issue
    assert ("community", "discourse:991") in kinds
    assert "Hi dana, here is how to track it: https://help.example.invalid/tracking" in page
    assert "Hi dana, this should help: Tracking your parcel https://help.example.invalid/tracking" in page
    assert "The community has answered this one: https://forum.example.invalid/t/tracking/991" in page


async def test_in_a_thread_of_several_people_the_panel_is_about_the_author_being_answered(app_client, runtime):
    """A Reddit thread: the customer asks, a community member chimes in. Whoever "Reply to" picks is
    the person the panel shows, with their own earlier posts only, each naming its author."""
    cust = await _customer(runtime, "Kim Customer")
    earlier = datetime.now(UTC) - timedelta(days=2)
    await add_mention(runtime, "kim's old question about invoices", platform="x", handle="kim_x", customer_id=cust,
                      created_at=earlier)
    await add_mention(runtime, "hal's old tip about routers", platform="reddit", handle="helper_hal",
                      created_at=earlier)
    kim = await add_mention(runtime, "my internet drops every night", platform="reddit", handle="kim_r",
                            customer_id=cust, created_at=datetime.now(UTC) - timedelta(minutes=10))
    hal = await add_mention(runtime, "restart the router, works for me", platform="reddit", handle="helper_hal",
                            conversation_id=kim.conversation_id, created_at=datetime.now(UTC) - timedelta(minutes=2))
    cid = kim.conversation_id
    await login(app_client, "alice")

    page = await (await app_client.get(f"/conversations/{cid}")).text()  # the latest waiting post: hal's
    assert f'<option value="{hal.id}" selected>' in page
    assert "Answering <bdi>helper_hal</bdi> on reddit" in page
    assert "Kim Customer" not in page and "Not linked to a customer record" in page
    earlier_hal = section(page, "Earlier contacts")
    assert "hal&#39;s old tip about routers" in earlier_hal and "<bdi>helper_hal</bdi> on reddit" in earlier_hal
    assert "kim&#39;s old question" not in earlier_hal

    page = await (await app_client.get(f"/conversations/{cid}?mention={kim.id}")).text()
    assert f'<option value="{kim.id}" selected>' in page
    assert "Answering <bdi>kim_r</bdi> on reddit" in page and "Kim Customer" in page
    earlier_kim = section(page, "Earlier contacts")
    assert "kim&#39;s old question about invoices" in earlier_kim and "<bdi>kim_x</bdi> on x" in earlier_kim
    assert "hal&#39;s old tip" not in earlier_kim and "restart the router" not in earlier_kim
