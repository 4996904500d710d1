"""A secure link opens a customer's private channel: wherever a text may quote one (an outbox shown
to agents and bots, a dead letter shown to an admin, a privacy export), it is masked, however it was
pasted."""

from __future__ import annotations

import secrets

import pytest

from escalation.links import shown_without_links

TOKEN = secrets.token_urlsafe(32)


@pytest.mark.parametrize("quoted", [
    f"https://care.example.com/secure/{TOKEN}",
    f"http://care.example.com:8080/care/secure/{TOKEN}",
    f"care.example.com/secure/{TOKEN}",  # the scheme left off when pasted back
    f"/secure/{TOKEN}",
])
def test_a_quoted_secure_link_is_masked_and_the_words_around_it_kept(quoted):
    shown = shown_without_links(f"this link fails ({quoted}), help")
    assert TOKEN not in shown and shown == "this link fails ([secure link]), help"


def test_text_without_a_secure_link_is_left_as_it_is():
    text = "see https://status.example.com/incidents/42 and /secure/ with no token"
    assert shown_without_links(text) == text
