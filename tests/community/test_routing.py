"""Routing by demand category, safety first: what each kind of mention becomes."""

from __future__ import annotations

import pytest

from community.retrieval import Candidate
from community.routing import OpenCase, RouteInput, decide
from community.rules import RuleMatch

T = 0.55


def r(**kw) -> RouteInput:
    base = dict(sentiment="neutral", sensitivity="none", issue_type="account_access", issue_confidence=0.9,
                toxicity="not_offensive", spam="ham", pii_exposed=False, is_public=True, kind="post",
                answer=Candidate("template", "login_help", 0.9, "template 'login_help' answers account_access"))
    base.update(kw)
    return RouteInput(**base)


def outcome(**kw) -> str:
    return decide(r(**kw), auto_threshold=T).outcome


def test_high_volume_low_touch_questions_are_answered_at_once():
    d = decide(r(), auto_threshold=T)
    assert d.outcome == "auto_answer" and d.details["answer"]["ref"] == "login_help" and d.reason


@pytest.mark.parametrize("sensitivity", ["security", "fraud"])
def test_security_and_fraud_always_go_private_even_with_a_perfect_answer_or_a_hold_rule(sensitivity):
    assert outcome(sensitivity=sensitivity, rules=[RuleMatch("x", "hold", "r")]) == "escalate_private"
    d = decide(r(sensitivity=sensitivity, pii_exposed=True), auto_threshold=T)
    assert d.details["hide_first"] and d.details["redact"]


def test_safety_comes_before_helpfulness():
    assert outcome(spam="spam") == "moderate"
    assert outcome(toxicity="offensive") == "moderate"
    assert outcome(author_banned=True) == "moderate"
    d = decide(r(pii_exposed=True), auto_threshold=T)
    assert (d.outcome, d.details["action"], d.details["notify"]) == ("moderate", "hide", "pii_removed_notice")
    assert outcome(sensitivity="account") == "agent_queue"


def test_a_matching_rule_names_itself_in_the_decision():
    d = decide(r(rules=[RuleMatch("new-account-links", "hold", "Links are reviewed first.")]), auto_threshold=T)
    assert (d.outcome, d.details["rule"], d.details["action"]) == ("moderate", "new-account-links", "hold")
    assert d.reason.startswith("new-account-links:")
    side = decide(r(rules=[RuleMatch("loud", "notify", "lead", notify="care-leads")]), auto_threshold=T)
    assert side.outcome == "auto_answer" and side.details["rule_actions"][0]["notify"] == "care-leads"


def test_side_actions_carry_the_rules_own_reason_for_the_alert():
    """Alerts showed "rule high-reach-complaint" instead of what the rule says."""
    side = decide(r(rules=[RuleMatch("loud", "notify", "A negative post from a large account.", notify="care-leads"),
                           RuleMatch("tag", "label", "Refund talk.", label="refunds")]), auto_threshold=T)
    assert [a["reason"] for a in side.details["rule_actions"]] == ["A negative post from a large account.",
                                                                   "Refund talk."]


def test_a_rule_that_holds_or_removes_tells_its_author_why_unless_it_says_not_to():
    held = decide(r(rules=[RuleMatch("rude", "hold", "Keep it civil.")]), auto_threshold=T)
    assert (held.details["notify"], held.details["notice_reason"]) == ("rule_held_notice", "Keep it civil.")
    removed = decide(r(rules=[RuleMatch("links", "remove", "No links.")]), auto_threshold=T)
    assert (removed.details["notify"], removed.details["notice_reason"]) == ("rule_removed_notice", "No links.")
    own = decide(r(rules=[RuleMatch("links", "remove", "No links.", message_template="links_notice")]),
                 auto_threshold=T)
    assert own.details["notify"] == "links_notice"
    spam = decide(r(rules=[RuleMatch("spam", "remove", "No spam.", notify_author=False)]), auto_threshold=T)
    assert "notify" not in spam.details and "notice_reason" not in spam.details
    leak = decide(r(pii_exposed=True, rules=[RuleMatch("links", "remove", "No links.")]), auto_threshold=T)
    assert leak.details["notify"] == "pii_removed_notice" and "notice_reason" not in leak.details  # one notice


def test_high_touch_and_unsure_answers_go_to_an_agent_with_a_suggestion():
    d = decide(r(issue_type="bug_report", answer=Candidate("template", "bug_ack", 0.9, "bug")), auto_threshold=T)
    assert d.outcome == "agent_queue" and d.details["suggestion"]["ref"] == "bug_ack"
    assert outcome(issue_confidence=0.3, answer=Candidate("template", "login_help", 0.3, "t")) == "agent_queue"
    assert outcome(issue_type="order_delivery", sentiment="negative") == "agent_queue"  # a damaged parcel


def test_retrieval_that_agrees_with_the_issue_type_raises_confidence():
    c = Candidate("article", "two-factor-codes", 0.5, "article", "https://help/2fa", issue_match=True)
    d = decide(r(issue_confidence=0.3, answer=Candidate("template", "login_help", 0.3, "t"), retrieved=[c]),
               auto_threshold=T)
    assert d.outcome == "auto_answer" and d.details["answer"]["ref"] == "two-factor-codes"
    assert d.confidence == pytest.approx(1 - 0.7 * 0.5)
    off_topic = Candidate("article", "family-plan", 0.5, "article", "https://help/fam", issue_match=False)
    assert outcome(issue_confidence=0.3, answer=None, retrieved=[off_topic]) == "agent_queue"


def test_low_volume_channels_leave_questions_to_the_community_or_link_its_accepted_answer():
    d = decide(r(platform="reddit", community_channel=True, issue_type="billing"), auto_threshold=T)
    assert d.outcome == "community_answer" and d.details["awaiting"] == "community"
    accepted = Candidate("community", "reddit:t1_a", 0.8, "community 'x'", "https://reddit.example/t1_a")
    d = decide(r(platform="reddit", community_channel=True, community_answer=accepted), auto_threshold=T)
    assert d.outcome == "community_answer" and d.details["answer"]["url"] == "https://reddit.example/t1_a"
    assert outcome(platform="reddit", community_channel=True, issue_type="bug_report") == "agent_queue"


def test_incidents_broadcast_and_chit_chat_and_accepted_answers_are_not_answered():
    assert decide(r(incident_id=7), auto_threshold=T).details["incident_id"] == 7
    assert outcome(issue_type="praise") == "ignore"
    assert outcome(issue_type="other", sentiment="negative") == "ignore"
    assert outcome(accepted_answer=True) == "ignore"


def test_a_customer_with_an_open_case_is_answered_there_not_in_public():
    case = OpenCase(7, "security", same_thread=True)
    d = decide(r(open_case=case), auto_threshold=T)  # a perfect public answer is not sent beside the case
    assert (d.outcome, d.details["case_id"], d.details["category"], d.details["follow_up"]) == \
        ("escalate_private", 7, "security", True)
    assert outcome(open_case=case, sensitivity="account") == "escalate_private"
    assert outcome(open_case=case, issue_type="other") == "escalate_private"  # in the thread: part of the story


def test_safety_still_comes_first_for_a_customer_with_an_open_case():
    case = OpenCase(7, "fraud", same_thread=True)
    assert outcome(open_case=case, spam="spam") == "moderate"  # a taken-over account's spam is held
    d = decide(r(open_case=case, pii_exposed=True), auto_threshold=T)
    assert (d.outcome, d.details["action"]) == ("moderate", "hide")
    assert outcome(open_case=case, accepted_answer=True) == "ignore"


def test_thanks_and_unplaced_posts_elsewhere_are_left_alone_rather_than_met_with_another_notice():
    elsewhere = OpenCase(7, "security", same_thread=False)
    assert outcome(open_case=OpenCase(7, "security", same_thread=True), issue_type="praise") == "ignore"
    assert outcome(open_case=elsewhere, issue_type="praise") == "ignore"
    assert outcome(open_case=elsewhere, issue_type="other") == "ignore"
    assert outcome(open_case=elsewhere) == "escalate_private"


def test_a_follow_up_decided_before_its_case_opened_still_joins_it():
    d = decide(r(open_case=OpenCase(None, "fraud", same_thread=True)), auto_threshold=T)
    assert (d.outcome, d.details["case_id"], d.details["category"]) == ("escalate_private", None, "fraud")
    assert d.reason.startswith("follow-up while the customer's case (fraud) is open")


def test_a_customer_we_are_talking_to_reaches_a_person_unless_there_is_nothing_to_answer():
    d = decide(r(agent_thread=True), auto_threshold=T)  # even with a perfect answer: the agent has them
    assert (d.outcome, d.details["follow_up"]) == ("agent_queue", True)
    assert outcome(agent_thread=True, issue_type="praise") == "ignore"
    assert outcome(agent_thread=True, spam="spam") == "moderate"
    assert outcome(brand_replied=True, issue_type="other") == "agent_queue"  # "did that, nothing happens"
    assert outcome(brand_replied=True, issue_type="praise") == "ignore"
    assert outcome(issue_type="other") == "ignore"


def test_a_thank_you_read_as_an_incident_type_goes_where_praise_goes_never_to_a_status_reply():
    """"thanks, offline mode saved my commute today!" read as outage (community.reports)."""
    for issue in ("outage", "account_access"):
        d = decide(r(issue_type=issue, thanks=True, incident_id=7), auto_threshold=T)
        assert (d.outcome, d.reason) == ("ignore", f"{issue}: thanks or praise, not a report: nothing to answer")
    assert outcome(issue_type="outage", thanks=True, agent_thread=True) == "ignore"
    assert outcome(issue_type="outage", thanks=True, open_case=OpenCase(7, "security", same_thread=True)) == "ignore"
    assert outcome(issue_type="feature_request", thanks=True) == "agent_queue"  # "would love dark mode, thanks!"
    assert outcome(issue_type="outage", incident_id=7) == "broadcast"  # a report still hears the status


FAMILY_PLAN = Candidate("article", "family-plan", 0.61, "article 'Family plan'", "https://help/fam", issue_match=False)
PRODUCT_HELP = Candidate("template", "product_help", 0.3, "template 'product_help' answers product_question")


@pytest.mark.parametrize("issue", ["product_question", "billing", "cancellation", "order_delivery"])
def test_a_thank_you_under_a_type_the_bot_answers_gets_no_article_it_did_not_ask_for(issue):
    """QA: "thanks, the family plan works now" read as product_question or billing was answered in
    public with the family-plan article (retrieval 0.61, above the auto threshold)."""
    question = r(issue_type=issue, issue_confidence=0.3, answer=PRODUCT_HELP, retrieved=[FAMILY_PLAN])
    assert decide(question, auto_threshold=T).outcome == "auto_answer"  # what it would get as a question
    d = decide(r(issue_type=issue, issue_confidence=0.3, answer=PRODUCT_HELP, retrieved=[FAMILY_PLAN], thanks=True),
               auto_threshold=T)
    assert (d.outcome, d.reason) == ("ignore", f"{issue}: thanks or praise, not a report: nothing to answer")
    assert "answer" not in d.details and "suggestion" not in d.details


def test_a_thank_you_on_a_community_channel_gets_no_community_answer_nor_waits_for_one():
    accepted = Candidate("community", "reddit:t1_a", 0.8, "community 'x'", "https://reddit.example/t1_a")
    for community_answer in (accepted, None):
        kw = {"platform": "reddit", "community_channel": True, "issue_type": "billing",
              "community_answer": community_answer}
        assert outcome(**kw) == "community_answer"
        assert outcome(**kw, thanks=True) == "ignore"


def test_a_thank_you_under_a_high_touch_type_still_reaches_a_person_with_the_types_acknowledgement():
    """"would love a dark mode, thanks!" (a wish) and "shuffle keeps playing the same 20 songs, great
    app otherwise" (a bug) name nothing is_thanks counts as a request or a breakage: a person weighs
    them, never the bot, as before."""
    ack = Candidate("template", "feature_ack", 0.8, "template 'feature_ack' answers feature_request")
    d = decide(r(issue_type="feature_request", thanks=True, answer=ack, retrieved=[FAMILY_PLAN]), auto_threshold=T)
    assert (d.outcome, d.details["suggestion"]["ref"]) == ("agent_queue", "feature_ack")
    assert outcome(issue_type="bug_report", thanks=True, answer=Candidate("template", "bug_ack", 0.8, "b")) == \
        "agent_queue"
    assert outcome(issue_type="feature_request", thanks=True, platform="reddit", community_channel=True) == \
        "agent_queue"


def test_a_thank_you_the_bot_would_have_answered_is_left_alone_in_a_thread_like_praise():
    """An agent's conversation or an open case: "thanks, works now" is not queued as a follow-up nor
    escalated into the case (no second notice), as praise and a thank-you read as outage are not."""
    thanks = {"issue_type": "product_question", "answer": PRODUCT_HELP, "thanks": True}
    assert outcome(**thanks, agent_thread=True) == "ignore"
    assert outcome(**thanks, open_case=OpenCase(7, "security", same_thread=True)) == "ignore"
    assert outcome(**thanks, open_case=OpenCase(7, "security", same_thread=False)) == "ignore"
    assert outcome(issue_type="product_question", answer=PRODUCT_HELP, agent_thread=True) == "agent_queue"
    assert outcome(issue_type="other", thanks=True, brand_replied=True) == "agent_queue"  # "other" keeps its rule


def test_safety_still_comes_before_a_thank_you():
    thanks = {"issue_type": "billing", "thanks": True}
    assert outcome(**thanks, spam="spam") == outcome(**thanks, toxicity="offensive") == "moderate"
    assert decide(r(**thanks, pii_exposed=True), auto_threshold=T).details["action"] == "hide"
    assert outcome(**thanks, sensitivity="fraud") == "escalate_private"
    assert outcome(**thanks, rules=[RuleMatch("links", "hold", "Links are reviewed first.")]) == "moderate"


RISING = {"issue_type": "outage", "channel": "x", "count": 4, "expected": 1.0, "window_minutes": 30, "spike_at": 8}
CHECKS = Candidate("template", "outage_check", 0.9, "template 'outage_check' answers outage")


def test_a_report_while_its_type_climbs_toward_a_spike_goes_to_an_agent_not_the_standard_checks():
    """A live outage's first reporters were told "we're not seeing a wider problem" before the spike
    detector opened its incident."""
    quiet = decide(r(issue_type="outage", answer=CHECKS, sentiment="negative"), auto_threshold=T)
    assert quiet.outcome == "auto_answer" and quiet.details["answer"]["ref"] == "outage_check"  # a lone report
    d = decide(r(issue_type="outage", answer=CHECKS, sentiment="negative", rising=RISING), auto_threshold=T)
    assert d.outcome == "agent_queue" and d.details["rising"] == RISING and d.details["suggestion"] is None
    assert d.reason.startswith("4 outage reports on x in the last 30 minutes (usually 1; an incident opens at 8)")
    joined = decide(r(issue_type="outage", answer=CHECKS, rising=RISING, incident_id=7), auto_threshold=T)
    assert (joined.outcome, joined.details["incident_id"]) == ("broadcast", 7)  # the incident's status reaches it


def test_a_post_its_community_vouches_for_is_not_escalated_unless_its_writer_tells_their_own_trouble():
    """A moderator's "we never ask for your password by text; if you entered your details, change it"
    scored security and sent the moderator a secure link."""
    advice = dict(sensitivity="security", issue_type="account_security", vouched_for=True)
    d = decide(r(**advice, accepted_answer=True), auto_threshold=T)
    assert d.outcome == "ignore" and "not their own report" in d.details["not_escalated"]
    assert outcome(**advice) == "agent_queue"  # a staff post nobody accepted: a person may read it, no case
    assert outcome(**advice, own_trouble=True) == "escalate_private"  # "my account was hacked", moderator or not
    assert outcome(sensitivity="security", accepted_answer=True) == "escalate_private"  # an accepted answer alone
