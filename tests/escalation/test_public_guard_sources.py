"""The public-reply guard's remaining ways round it: a contact a bot wrote into a template is not the
brand's; a private message is never answered in public; a post not triaged yet that reads like a
takeover or fraud report is treated as one; a secure link never goes out in public."""

from __future__ import annotations

import secrets
import urllib.parse

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select

from escalation.public_guard import public_reply_refusal
from models import Author, Mention, RouteDecision, Template, TriageResult
from models.base import utcnow
from models.db import Database
from service.audit import record


@pytest.fixture
async def db(sqlite_url):
    database = Database(sqlite_url)
    await database.upgrade()
    yield database
    await database.engine.dispose()


async def post(db: Database, text: str, *, handle: str = "dana", triaged: bool = True, is_public: bool = True,
               sensitivity: str = "none") -> int:
    async with db.session() as s:
        author = await s.scalar(select(Author).where(Author.handle == handle))
        if author is None:
            author = Author(platform="x", author_key=f"@{handle}", handle=handle)
            s.add(author)
            await s.flush()
        key = f"{handle}-{is_public}-{triaged}-{text[:40]}"
        seen = await s.scalar(select(Mention.id).where(Mention.external_id == key))
        if seen is not None:  # hypothesis asks again with the same database
            return seen
        m = Mention(platform="x", external_id=key, text=text, author_id=author.id, is_public=is_public,
                    kind="post" if is_public else "dm", created_at=utcnow(), content_hash=f"h-{key}")
        s.add(m)
        await s.flush()
        if triaged:
            s.add(TriageResult(mention_id=m.id, model_version="t", sentiment="negative", sensitivity=sensitivity,
                               escalate=sensitivity in ("security", "fraud"), issue_type="billing",
                               toxicity="not_offensive", spam="ham", pii_exposed=False, priority=50.0, scores={}))
            s.add(RouteDecision(mention_id=m.id, outcome="agent_queue", reason="r", router_version="t"))
        await s.commit()
        return m.id


async def refusal(db: Database, mention_id: int, text: str, *, overridable: bool | None = None) -> str | None:
    async with db.session() as s:
        found = await public_reply_refusal(s, await s.get(Mention, mention_id), text)
    if found is not None and overridable is not None:
        assert found.overridable is overridable, found
    return found.reason if found else None


async def write_template(db: Database, name: str, body: str, *, actor: str | None,
                         action: str = "template.created") -> None:
    """A template as the API (``token:...`` or ``session:...``) or the console writes it, audited the
    same way; ``actor=None``: loaded from the knowledge files, with no audit entry."""
    async with db.session() as s:
        t = await s.scalar(select(Template).where(Template.name == name))
        if t is None:
            t = Template(name=name, issue_types=[], variants={})
            s.add(t)
        t.variants = {"friendly": body}
        if actor is not None:
            record(s, actor, action, "template", name)
        await s.commit()


# --- the brand's own contacts ---------------------------------------------------------------------

LAUNDERED = "+1 415 555 0123 / jane.doe@gmail.com"


async def test_a_contact_a_bot_wrote_into_a_template_is_not_the_brands(db):
    m = await post(db, "how do I reach you?")
    reply = f"@someone you can reach Jane on {LAUNDERED}"
    assert "brand's own" in await refusal(db, m, reply, overridable=True)
    await write_template(db, "zz-launder", f"Reach us on {LAUNDERED}", actor="token:alice")
    assert "brand's own" in await refusal(db, m, reply, overridable=True)  # the bot's template changes nothing
    assert "brand's own" in await refusal(db, m, "mail jane.doe@gmail.com")
    # a person saving it in the console makes it the brand's word
    await write_template(db, "zz-launder", f"Reach us on {LAUNDERED}", actor="session:alice",
                         action="knowledge.template_saved")
    assert await refusal(db, m, reply) is None
    # ... until a bot writes it again
    await write_template(db, "zz-launder", f"Reach us on {LAUNDERED}", actor="token:alice", action="template.updated")
    assert "brand's own" in await refusal(db, m, reply)


async def test_templates_people_wrote_or_loaded_from_files_still_give_the_brands_contacts(db):
    m = await post(db, "where do I send my receipt?")
    await write_template(db, "receipts", "Mail receipts to receipts@acme.example.", actor=None)
    await write_template(db, "phone", "Call us on 1-800-555-0100", actor="session:bob")
    assert await refusal(db, m, "Mail it to receipts@acme.example or call 1-800-555-0100") is None
    await write_template(db, "bot_copy", "Mail receipts to receipts@acme.example.", actor="token:alice")
    assert await refusal(db, m, "Mail it to receipts@acme.example") is None  # a person's template gives it too


async def test_a_bot_deleting_and_recreating_a_persons_template_does_not_keep_its_trust(db):
    m = await post(db, "contact?")
    await write_template(db, "contact", "Write to help@acme.example", actor="session:bob")
    assert await refusal(db, m, "Write to help@acme.example") is None
    async with db.session() as s:
        await s.delete(await s.scalar(select(Template).where(Template.name == "contact")))
        record(s, "token:alice", "template.deleted", "template", "contact")
        await s.commit()
    await write_template(db, "contact", "Write to help@acme.example or mallory@evil.example", actor="token:alice")
    assert "brand's own" in await refusal(db, m, "Write to mallory@evil.example")


# --- private messages ------------------------------------------------------------------------------

async def test_a_private_message_is_never_answered_in_public(db):
    dm = await post(db, "hi, where is my parcel? order 5521", is_public=False)
    reason = await refusal(db, dm, "Your parcel is on its way, order 5521 ships Monday", overridable=False)
    assert "private message" in reason
    assert "private message" in await refusal(db, dm, "Thanks!", overridable=False)
    untriaged = await post(db, "my new address is 12 Elm St", is_public=False, triaged=False, handle="w_dm")
    assert "private message" in await refusal(db, untriaged, "Updated!", overridable=False)
    public = await post(db, "hi, where is my parcel? order 5521", handle="pub")
    assert await refusal(db, public, "Your parcel is on its way, order 5521 ships Monday") is None


# --- not triaged yet ---------------------------------------------------------------------------------

TAKEOVER = "@Acme someone hacked my account and is buying stuff with my saved card, they changed my email"


async def test_a_takeover_report_not_triaged_yet_gets_no_public_reply(db):
    pending = await post(db, TAKEOVER, triaged=False, handle="eve")
    reason = await refusal(db, pending, "Sorry to hear! Try resetting your password at acme.com/reset",
                           overridable=True)
    assert "not triaged yet" in reason and "try again shortly" in reason
    fraud = await post(db, "there are charges on my card I never made", triaged=False, handle="frank")
    assert "not triaged yet" in await refusal(db, fraud, "Sorry! Check your statement")
    # a plain question not triaged yet may be answered; once triaged, triage decides
    question = await post(db, "the app crashes when I open playlists", triaged=False, handle="gus")
    assert await refusal(db, question, "Sorry! Try updating the app") is None
    triaged = await post(db, TAKEOVER, sensitivity="security", handle="dave")
    assert "private channel" in await refusal(db, triaged, "Sorry to hear!", overridable=True)


# --- secure links ------------------------------------------------------------------------------------

TOKEN = secrets.token_urlsafe(32)


@pytest.mark.parametrize("text", [
    f"Use https://care.example.com/secure/{TOKEN}",
    f"go to /secure/{TOKEN} now",
    f"care.example.com:8443/care/secure/{TOKEN}",
    "open " + urllib.parse.quote(f"https://care.example.com/secure/{TOKEN}", safe=""),
    f"open https:&#x2F;&#x2F;care.example.com&#x2F;secure&#x2F;{TOKEN}",
    f"open https:\\/\\/care.example.com\\/secure\\/{TOKEN}",
])
async def test_a_secure_link_is_never_posted_in_public(db, text):
    m = await post(db, "I need help with my account")
    assert "secure link" in await refusal(db, m, text, overridable=False)


async def test_ordinary_links_and_words_are_not_secure_links(db):
    m = await post(db, "I need help with my account")
    for text in ("See https://acme.example/security for tips", "Our /secure/ page explains it",
                 "Visit https://acme.example/secure/faq", "Your secure link is on its way in a DM"):
        assert await refusal(db, m, text) is None, text


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=st.text(max_size=40), after=st.text(max_size=40),
       token=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", min_size=43,
                     max_size=43),
       host=st.sampled_from(["https://care.example.com", "http://127.0.0.1:8080", "care.example.com", ""]))
async def test_any_secure_link_in_any_surroundings_is_refused(db, before, after, token, host):
    m = await post(db, "I need help with my account", handle="prop")
    assert await refusal(db, m, f"{before} {host}/secure/{token} {after}", overridable=False) is not None


async def test_an_agent_overruling_one_reason_sees_every_reason_at_once(db):
    """An agent's override covers the refusal as shown: an address that may not be the brand's on a
    matter handled privately says both, so overruling the first never passes over the second unseen."""
    m = await post(db, "someone hacked my account", sensitivity="security", handle="both")
    reason = await refusal(db, m, "We'll write to helper@elsewhere.example", overridable=True)
    assert "brand's own" in reason and "private channel" in reason
