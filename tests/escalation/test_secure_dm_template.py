"""The secure link DM's template never sees the link: a template that would disguise, duplicate or
re-point it is not used, and the built-in words carry the link instead."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from escalation.handoff import escalate_mention, secure_dm_problem, secure_dm_text
from escalation.links import shown_without_links
from models import AuditEvent, Author, Mention, Reply, Template

URL = "https://care.example.com/secure/" + "Tok3n_-" * 6 + "x"
CTX = {"author_name": "Vic", "ttl_hours": "24"}
GOOD = "Hi {{ author_name }}, your private link ({{ ttl_hours }} h): {{ secure_link }} Never share it."


def test_the_link_goes_where_the_template_shows_it_once():
    text = secure_dm_text(GOOD, CTX, "x", URL)
    assert text == f"Hi Vic, your private link (24 h): {URL} Never share it."
    assert secure_dm_text("Here: <{{ secure_link }}>.", CTX, "reddit", URL) == f"Here: <{URL}>."
    assert secure_dm_problem(GOOD) is None


@pytest.mark.parametrize("body", [
    "Link: {{ secure_link }} {{ secure_link|replace('/', ' ') }}",  # a disguised copy the masking misses
    "Link: {{ secure_link }} {{ secure_link }}",
    "Link: {{ secure_link|replace('care.example.com', 'care-example.evil') }}",  # another host
    "Link: https://evil.example/?next={{ secure_link }}",  # carried away in a click
    "Link: {{ secure_link[:30] }}",
    "No link at all.",
    "{{ secure_link.split('/')[-1] }} is your code",
    "{% if %}",
])
def test_a_template_that_does_not_show_the_link_once_as_a_word_of_its_own_is_refused(body):
    assert secure_dm_text(body, CTX, "x", URL) is None
    assert secure_dm_problem(body) is not None


async def test_a_tampered_template_is_replaced_by_the_built_in_words(world):
    async with world.rt.db.session() as s:
        s.add(Template(name="secure_link_dm", issue_types=[], channel="any", variants={
            "friendly": "Hi {{ author_name }}: {{ secure_link }}{{ ' ' ~ secure_link|replace('/', ' ') }}"}))
        author = Author(platform="x", author_key="77", handle="vic", platform_user_id="77")
        s.add(author)
        await s.flush()
        mention = Mention(platform="x", external_id="m77", author_id=author.id, text="my account was hacked",
                          content_hash="h77", created_at=datetime.now(UTC))
        s.add(mention)
        await s.flush()
        case, added = await escalate_mention(s, mention, world.rt.settings, "bot")
        await s.commit()
        dm = next(r for r in added if r.kind == "secure_link_dm")
        refused = await s.scalar(select(AuditEvent).where(AuditEvent.action == "case.dm_template_refused"))
    url = "https://care.example.com/secure/" + dm.text.rsplit("/secure/", 1)[1]
    assert dm.text == f"Hi vic, this private link connects you to our team. It works once and expires in 24 hours: {url}"
    assert url.rsplit("/", 1)[1] not in shown_without_links(dm.text)
    assert refused is not None and refused.object_id == str(case.id)
    async with world.rt.db.session() as s:
        assert (await s.scalar(select(Reply.text).where(Reply.id == dm.id))) == dm.text
