"""Authors are told privately when a rule holds or removes their post: the rule's reason in its
template or in a built-in notice, once, never with personal data; spam rules may stay silent
(``notify_author: false``)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from models import Reply, Template

RULES = """
- name: no-short-links
  keywords: [bit.ly]
  action: remove
  reason: Short links are not allowed here, because nobody can see where they lead.
- name: all-caps-rant
  regex: "[A-Z ]{30,}"
  action: hold
  reason: Shouting makes threads hard to read.
- name: spam-wave
  keywords: [giveaway]
  action: remove
  notify_author: false
  reason: Giveaways are not allowed.
- name: refund-scam
  keywords: [refund desk]
  action: remove
  message_template: scam_notice
  reason: Refunds never go through a "desk" account.
"""


@pytest.fixture
def ruled(make_world, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return make_world(moderation_rules_path=path)


async def notices(world, mention_id: int) -> list[Reply]:
    return [r for r in await world.get(Reply, mention_id=mention_id) if r.kind == "notice"]


async def test_a_rule_removal_tells_the_author_privately_why_once(ruled, connectors):
    m = await ruled.mention("cheap tickets at bit.ly/abc", platform="reddit", issue="other", author="sam")
    await ruled.run(m)
    await ruled.run(m)  # redelivered: one notice
    [notice] = await notices(ruled, m.id)
    assert (notice.visibility, notice.template, notice.status) == ("private", "rule_removed_notice", "sent")
    assert "removed" in notice.text and "Short links are not allowed here" in notice.text
    assert connectors["reddit"].kinds() == ["remove", "private_message"]
    assert connectors["reddit"].calls[1].recipient_handle == "sam"


async def test_a_rule_hold_tells_the_author_the_post_waits_for_a_moderator(ruled, connectors):
    m = await ruled.mention("WHY IS THE APP SO SLOW EVERY SINGLE EVENING", platform="discourse", issue="other")
    await ruled.run(m)
    [notice] = await notices(ruled, m.id)
    assert "waiting for a moderator" in notice.text and "Shouting makes threads hard to read." in notice.text
    assert connectors["discourse"].kinds() == ["hide", "private_message"]  # hidden while it waits, author told


async def test_a_rule_with_notify_author_false_tells_nobody(ruled, connectors):
    m = await ruled.mention("giveaway! win big", platform="reddit", issue="other")
    await ruled.run(m)
    assert await notices(ruled, m.id) == [] and connectors["reddit"].kinds() == ["remove"]


async def test_the_bundled_spam_rules_tell_spammers_nothing(world, connectors):
    removed = await world.mention("crypto giveaway, send eth", platform="reddit", issue="other")
    held = await world.mention("buy my stuff", platform="reddit", issue="other", spam=0.97)
    await world.run(removed, held)
    assert await notices(world, removed.id) == [] and await notices(world, held.id) == []
    assert "private_message" not in connectors["reddit"].kinds()


async def test_a_rule_template_gets_the_reason_and_a_missing_one_falls_back_to_the_built_in_notice(ruled, connectors):
    m = await ruled.mention("message the acme refund desk on telegram", platform="reddit", issue="other")
    await ruled.run(m)
    [fallback] = await notices(ruled, m.id)  # the template does not exist (yet): the author is still told
    assert fallback.text.endswith('removed by our community rules. Refunds never go through a "desk" account.')
    async with ruled.db.session() as s:
        s.add(Template(name="scam_notice", variants={"friendly": "Hi {{ author_name }}, we took your post down: "
                                                                  "{{ reason }} Questions? Reply here."}))
        await s.commit()
    again = await ruled.mention("the refund desk will call you", platform="reddit", issue="other", author="kim")
    await ruled.run(again)
    [notice] = await notices(ruled, again.id)
    assert notice.text.startswith("Hi Kim, we took your post down:") and "Questions? Reply here." in notice.text
    assert "Refunds never go through" in notice.text


async def test_a_post_with_personal_data_gets_the_personal_data_notice_alone_without_the_data(world, connectors):
    text = "giveaway winner! call me at +1 415 555 0134"
    at = text.index("+1")
    m = await world.mention(text, platform="reddit", issue="other",
                            pii=[{"type": "phone", "start": at, "end": len(text)}])
    await world.run(m)
    [notice] = await notices(world, m.id)  # even though the spam rule tells spammers nothing
    assert notice.template == "pii_removed_notice" and "555" not in notice.text
    async with world.db.session() as s:
        texts = list(await s.scalars(select(Reply.text)))
    assert not any("555 0134" in t for t in texts)
