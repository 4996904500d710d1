"""Sensitive details never reach a public reply written by a person or a bot: the check behind the
console's reply form and the bot API."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select

from escalation.cases import open_or_join, resolve
from escalation.public_guard import public_reply_refusal
from models import Author, Customer, KnowledgeArticle, Mention, RouteDecision, Template, TriageResult
from models.base import utcnow
from models.db import Database


@pytest.fixture
async def db(sqlite_url):
    database = Database(sqlite_url)
    await database.upgrade()
    yield database
    await database.engine.dispose()


async def post(db: Database, text: str, *, sensitivity: str = "none", outcome: str = "agent_queue",
               handle: str = "dana", customer: Customer | None = None) -> int:
    async with db.session() as s:
        author = await s.scalar(select(Author).where(Author.handle == handle))
        if author is None:
            if customer is not None:
                s.add(customer)
                await s.flush()
            author = Author(platform="x", author_key=f"@{handle}", handle=handle,
                            customer_id=customer.id if customer else None)
            s.add(author)
            await s.flush()
        seen = await s.scalar(select(Mention.id).where(Mention.external_id == f"{handle}-{text[:20]}"))
        if seen is not None:  # hypothesis asks again with the same database
            return seen
        m = Mention(platform="x", external_id=f"{handle}-{text[:20]}", text=text, author_id=author.id,
                    created_at=utcnow(), content_hash=f"h-{handle}-{text}")
        s.add(m)
        await s.flush()
        s.add(TriageResult(mention_id=m.id, model_version="t", sentiment="negative", sensitivity=sensitivity,
                           escalate=sensitivity in ("security", "fraud"), issue_type="billing", toxicity="not_offensive",
                           spam="ham", pii_exposed=False, priority=50.0, scores={}))
        s.add(RouteDecision(mention_id=m.id, outcome=outcome, reason="r", router_version="t"))
        await s.commit()
        return m.id


async def brand_gives(db: Database, *bodies: str) -> None:
    """The brand's own contact details, as its templates give them."""
    async with db.session() as s:
        for i, body in enumerate(bodies):
            s.add(Template(name=f"contact_{i}", variants={"friendly": body}, issue_types=[]))
        await s.commit()


async def refusal(db: Database, mention_id: int, text: str, *, overridable: bool | None = None) -> str | None:
    """The reason, checking on the way whether an agent may override it."""
    async with db.session() as s:
        found = await public_reply_refusal(s, await s.get(Mention, mention_id), text)
    if found is not None and overridable is not None:
        assert found.overridable is overridable, found
    return found.reason if found else None


async def test_secrets_never_go_out_in_public(db):
    m = await post(db, "charged twice this month")
    assert await refusal(db, m, "Sorry! We'll refund it to your card soon.") is None
    assert "card number" in await refusal(db, m, "Refunded to 4111 1111 1111 1111 today", overridable=False)
    assert "password" in await refusal(db, m, "Try logging in with password: Summer2017! again")
    assert "IBAN" in await refusal(db, m, "We sent it to GB82 WEST 1234 5698 7654 32")


async def test_the_customers_own_contact_details_stay_private_but_the_brands_may_be_given(db):
    maria = Customer(external_ref="C-9", name="Maria", email="maria.lopez@example.com", phone="+1 555 010 0199")
    m = await post(db, "my invoice went to maria.l@example.org, can you check?", handle="maria", customer=maria)
    await brand_gives(db, "Write to billing@acme.example and we'll sort it out")
    assert await refusal(db, m, "Write to billing@acme.example and we'll sort it out") is None
    assert "e-mail address or phone" in await refusal(db, m, "We resent it to maria.l@example.org",
                                                      overridable=False)
    assert "e-mail address or phone" in await refusal(db, m, "Sent to MARIA.LOPEZ@example.com, the address on file")
    assert "e-mail address or phone" in await refusal(db, m, "We'll call you on (555) 010-0199 today")


async def test_contact_details_in_the_authors_display_name_are_theirs_too(db):
    m = await post(db, "how do I cancel my subscription?", handle="sam_k")
    async with db.session() as s:
        author = await s.scalar(select(Author).where(Author.handle == "sam_k"))
        author.display_name = "Sam · call 206-555-0177 · sam.k@example.com"
        await s.commit()
    assert "e-mail address or phone" in await refusal(db, m, "Hi Sam · call 206-555-0177, sorry to see you go!",
                                                      overridable=False)
    assert "e-mail address or phone" in await refusal(db, m, "We wrote to sam.k@example.com")
    await brand_gives(db, "Call us on 1-800-555-0100")
    assert await refusal(db, m, "Hi Sam, sorry to see you go! Call us on 1-800-555-0100") is None


async def test_an_address_redacted_from_the_post_cannot_be_compared_so_any_such_address_needs_an_agent(db):
    """A post hidden for exposing an e-mail address is stored with "[email]" in its place: the value is
    gone, so a public reply giving any address could be repeating it. An agent may say it is the
    brand's own (the override is audited)."""
    m = await post(db, "email me at [email] about my order please")
    assert "brand's own" in await refusal(db, m, "Hi! We will email you at jane.doe@example.com shortly",
                                          overridable=True)
    await brand_gives(db, "Call us on 0161 496 0000 and we'll sort it out")
    assert await refusal(db, m, "Call us on 0161 496 0000 and we'll sort it out") is None
    assert await refusal(db, m, "Thanks, we've sent it over") is None


async def test_another_customers_address_needs_an_agents_word_and_a_bot_cannot_give_it(db):
    """The address of the author of another post (here a security report) is neither this author's
    nor the brand's: only an agent may say it is the brand's after all."""
    await post(db, "my account was taken over, write to qa.victim@example.com", sensitivity="security",
               handle="victim")
    m = await post(db, "where do I send my receipt?", handle="other")
    assert "brand's own" in await refusal(db, m, "We'll mail qa.victim@example.com about it", overridable=True)
    async with db.session() as s:
        s.add(KnowledgeArticle(slug="receipts", title="Receipts", body="Mail receipts to receipts@acme.example."))
        await s.commit()
    assert await refusal(db, m, "Send it to RECEIPTS@acme.example please") is None


async def test_a_matter_handled_privately_gets_no_public_reply_until_its_case_is_resolved(db):
    hacked = await post(db, "someone hacked my account", sensitivity="security", handle="erin")
    assert "private channel" in await refusal(db, hacked, "So sorry! We've reset your account.", overridable=True)
    routed = await post(db, "weird logins again", outcome="escalate_private", handle="finn")
    assert "private channel" in await refusal(db, routed, "Looking into it")
    later = await post(db, "thanks for the help earlier, how do I add a device?", handle="erin")
    async with db.session() as s:
        case, _ = await open_or_join(s, await s.get(Mention, hacked), "security")
        await s.commit()
    assert "private channel" in await refusal(db, later, "Settings → Devices → Add")  # her case is open
    async with db.session() as s:
        await resolve(s, await s.get(type(case), case.id), "alice")
        await s.commit()
    assert await refusal(db, later, "Settings → Devices → Add") is None



async def test_the_customers_case_on_another_platform_makes_her_posts_here_private_too(db):
    gina = Customer(external_ref="C-5", name="Gina", email="gina@example.com")
    hacked = await post(db, "someone is in my account", sensitivity="security", handle="gina_x", customer=gina)
    async with db.session() as s:
        await open_or_join(s, await s.get(Mention, hacked), "security")
        elsewhere = Author(platform="reddit", author_key="@gina_r", handle="gina_r", customer_id=gina.id)
        s.add(elsewhere)
        await s.commit()
    on_reddit = await post(db, "how do I add a device?", handle="gina_r")
    assert "private channel" in await refusal(db, on_reddit, "Settings → Devices → Add")


async def test_nothing_goes_out_in_public_under_a_post_deleted_on_its_platform_or_erased(db):
    """The platform refuses a reply to a deleted post (X: "reply to a Tweet that is deleted or not
    visible to you"): nobody may override that, whatever the reply says; shown again, it may be answered."""
    from models.mentions import ERASED_TEXT

    m = await post(db, "where is my refund?", handle="del_x")
    hacked = await post(db, "someone is in my account", sensitivity="security", handle="del_sec")

    async def set_post(mention_id: int, **values) -> None:
        async with db.session() as s:
            row = await s.get(Mention, mention_id)
            for k, v in values.items():
                setattr(row, k, v)
            await s.commit()

    await set_post(m, deleted=True, hidden=True)  # as ingest marks a post its author deleted
    deleted = "the post was deleted on X: a public reply cannot be posted to it; reply privately"
    assert await refusal(db, m, "Refunded today, sorry!", overridable=False) == deleted
    await set_post(hacked, deleted=True, platform="reddit")
    assert "deleted on Reddit" in await refusal(db, hacked, "We reset it", overridable=False)  # before "private"
    await set_post(m, deleted=False, hidden=False)  # the platform shows it again
    assert await refusal(db, m, "Refunded today, sorry!") is None
    await set_post(m, deleted=True, text=ERASED_TEXT)  # erased here on a privacy request, not "deleted on X"
    assert "erased on a privacy request" in await refusal(db, m, "Refunded today, sorry!", overridable=False)


def luhn(digits: str) -> str:
    total = sum((d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 == 0 else d
                for i, d in enumerate(int(c) for c in reversed(digits)))
    return digits + str((10 - total % 10) % 10)


cards = st.builds(lambda prefix, rest, sep: sep.join(luhn((prefix + rest)[:15])[i:i + 4] for i in range(0, 16, 4)),
                  st.sampled_from(["4", "51", "6011"]), st.text("0123456789", min_size=15, max_size=15),
                  st.sampled_from([" ", "-", ""]))  # 16-digit cards, grouped or whole


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=st.text(max_size=60), card=cards, after=st.text(max_size=60))
async def test_no_card_number_reaches_a_public_reply_whatever_surrounds_it(db, before, card, after):
    m = await post(db, "charged twice this month", handle="property")
    assert await refusal(db, m, f"{before} refunded to {card} today {after}") is not None
