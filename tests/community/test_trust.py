"""Posts a community vouches for — its moderators' and staff's, and accepted answers — pass the
moderation rules by (AutoModerator's ``moderators_exempt``) and are not held on a spam or abuse
classifier's suspicion; personal data in them is still hidden."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from community.rules import RuleError, Subject, evaluate, parse_rules
from community.trust import vouched_for
from models import AuditEvent, Case, ModerationAction, Reply, RouteDecision

LINKED = "Annual plans keep their price until renewal. Full price list: https://help.acme.example/articles/plans"
RULES = """
- name: likely-spam
  scores: {spam: 0.85}
  action: hold
  notify_author: false
- name: links-everywhere
  regex: "https?://"
  action: label
  label: has-link
  moderators_exempt: false
"""


OWN = frozenset({"acme"})


@pytest.mark.parametrize("platform,channel,raw,expected", [
    ("reddit", "r/acme", {"distinguished": "moderator"}, True),
    ("reddit", "r/Acme", {"distinguished": "admin"}, True),
    ("reddit", "r/scammers_own_sub", {"distinguished": "moderator"}, False),  # anyone moderates a sub of their own
    ("reddit", None, {"distinguished": "moderator"}, False),
    ("reddit", "r/acme", {"distinguished": None}, False),
    ("reddit", "r/acme", {}, False),
    ("discourse", "community/help", {"staff": True}, True),
    ("discourse", "community/help", {"moderator": True}, True),
    ("discourse", "community/help", {"admin": True}, True),
    ("discourse", "community/help", {"accepted_answer": True}, False),  # a topic's author accepts any reply
    ("discourse", "community/help", {"staff": "true", "moderator": False}, False),  # the serializer's booleans only
    ("x", "@AcmeHelp", {"distinguished": "moderator"}, False),  # X has no such mark: a tweet's raw cannot claim one
])
def test_what_marks_a_post_as_vouched_for(platform, channel, raw, expected):
    post = SimpleNamespace(platform=platform, channel=channel, raw=raw, in_reply_to=None)
    assert vouched_for(post, OWN) is expected


def test_rules_skip_vouched_posts_unless_they_say_moderators_exempt_false():
    rules = parse_rules(RULES)
    probs = {"spam": {"spam": 0.95, "ham": 0.05}}
    member = Subject(text=LINKED, platform="reddit", probabilities=probs)
    moderator = Subject(text=LINKED, platform="reddit", probabilities=probs, vouched_for=True)
    assert [m.rule for m in evaluate(rules, member)] == ["likely-spam", "links-everywhere"]
    assert [m.rule for m in evaluate(rules, moderator)] == ["links-everywhere"]
    with pytest.raises(RuleError, match="moderators_exempt is true or false"):
        parse_rules("- name: r\n  keywords: [x]\n  action: hold\n  moderators_exempt: sometimes\n")


async def test_a_moderators_answer_with_a_help_link_is_not_held_as_spam(make_world):
    """In the brand's own subreddit; a moderator of a subreddit of their own vouches for nothing."""
    world = make_world(reddit_subreddits=["r/Acme"])  # the bundled rules; 0.7 is spam to the classifier, under
    mod_mark = {"distinguished": "moderator"}          # their likely-spam rule
    member = await world.mention(LINKED, platform="reddit", author="someone", in_reply_to="t3_q1", spam=0.7,
                                 channel="r/acme")
    mod = await world.mention(LINKED, platform="reddit", author="acme_mod_jules", in_reply_to="t3_q1", spam=0.7,
                              channel="r/acme", raw=mod_mark)
    elsewhere = await world.mention("FREE premium here https://free-prem.example", platform="reddit",
                                    author="scammer", in_reply_to="t3_q9", spam=0.7, channel="r/scammers_own_sub",
                                    raw=mod_mark)
    await world.run(member, mod, elsewhere)
    decided = {d.mention_id: d for d in await world.get(RouteDecision)}
    assert decided[member.id].outcome == "moderate" and "builtin:spam" in decided[member.id].reason
    assert decided[mod.id].outcome == "ignore"  # the community's answer: kept for later askers
    assert decided[elsewhere.id].outcome == "moderate"
    held = {a.mention_id for a in await world.get(ModerationAction) if a.action in ("hide", "filter", "remove")}
    assert member.id in held and elsewhere.id in held and mod.id not in held


async def test_a_staff_post_passes_a_score_rule_by_and_is_not_held_as_abuse(make_world, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    world = make_world(moderation_rules_path=path)
    staff = await world.mention("This thread is going nowhere, idiots. Locking it: https://community.acme.example/faq",
                                platform="discourse", author="leo_b", spam=0.9, toxicity=0.9, raw={"staff": True})
    await world.run(staff)
    [decision] = await world.get(RouteDecision, mention_id=staff.id)
    assert decision.outcome != "moderate"
    assert decision.details.get("labels") == ["has-link"]  # the rule that checks staff posts too applied
    assert [a for a in await world.get(ModerationAction, mention_id=staff.id) if a.action != "label"] == []


async def test_personal_data_in_a_vouched_post_is_still_hidden(make_world):
    world = make_world()
    text = "Mail our team at jo.doe@example.com for a refund"
    at = text.index("jo.doe@example.com")
    mod = await world.mention(text, platform="reddit", author="acme_mod_jules", in_reply_to="t3_q2",
                              raw={"distinguished": "moderator"}, channel="r/acme",
                              pii=[{"type": "email", "start": at, "end": at + len("jo.doe@example.com")}])
    await world.run(mod)
    [decision] = await world.get(RouteDecision, mention_id=mod.id)
    assert decision.outcome == "moderate" and "builtin:pii" in decision.reason
    assert [a.action for a in await world.get(ModerationAction, mention_id=mod.id)] == ["hide"]


PHISHING_ADVICE = ("Thanks for the heads-up. We never ask for your password by text. Forward the message with the "
                   "'Report phishing' form in the help center. If you entered your details, change your password now "
                   "and sign out all devices: https://help.acme.example/articles/secure-your-account")


async def test_a_moderators_phishing_advice_opens_no_case_and_a_moderators_own_takeover_does(world):
    """The demo day's moderator was sent a secure link for the advice triage scored security; a redelivery
    does not route it again either."""
    mod_mark = {"distinguished": "moderator"}
    advice = await world.mention(PHISHING_ADVICE, platform="reddit", author="acme_mod_jules", in_reply_to="t3_psa",
                                 channel="r/acme", raw=mod_mark, sensitivity="security", issue="account_security")
    hacked = await world.mention("my account was hacked last night, someone changed the email", platform="discourse",
                                 author="leo_b", raw={"staff": True}, sensitivity="security", issue="account_security")
    await world.run(advice, hacked)
    await world.run(advice)  # a redelivery
    decided = {d.mention_id: d for d in await world.get(RouteDecision)}
    assert decided[advice.id].outcome == "ignore" and "not their own report" in decided[advice.id].details["not_escalated"]
    assert decided[hacked.id].outcome == "escalate_private"
    assert {c.author_id for c in await world.get(Case)} == {hacked.author_id}
    assert [r.kind for r in await world.get(Reply, mention_id=advice.id)] == []
    assert await world.get(AuditEvent, action="route.redecided") == []
