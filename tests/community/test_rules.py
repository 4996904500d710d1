"""Moderation rules: the bundled file loads, invalid rules are refused with line and reason, and
every condition and the strictest-action-wins decision behave as documented."""

from __future__ import annotations

import pytest

from community.rules import (
    BUNDLED_RULES,
    RuleError,
    Subject,
    decisive,
    evaluate,
    load_rules,
    parse_rules,
    unknown_templates,
)


def subject(text: str = "hello", **kw) -> Subject:
    return Subject(text=text, platform=kw.pop("platform", "reddit"), **kw)


def test_the_bundled_rules_load_with_unique_names():
    rules = load_rules(BUNDLED_RULES)
    assert rules and len({r.name for r in rules}) == len(rules)


@pytest.mark.parametrize("text, line, reason", [
    ("- name: a\n  keywords: [x]\n  action: delete\n", 3, "action must be one of"),
    ("- name: a\n  action: hold\n  conditions:\n    keywords: [x]\n    regex: '(unclosed'\n", 5, "invalid regex"),
    ("- name: a\n  action: hold\n", 1, "at least one condition"),
    ("- name: a\n  action: hold\n  conditions:\n    scores: {spam: 1.5}\n", 4, "between 0 and 1"),
    ("- name: a\n  action: hold\n  conditions:\n    scores: {rudeness: 0.5}\n", 4, "unknown score"),
    ("- name: a\n  action: hold\n  conditions:\n    pii: [shoe_size]\n", 4, "personal-data types"),
    ("- name: a\n  action: hold\n  conditions:\n    author: {karma_below: 3}\n", 4, "unknown author condition"),
    ("- name: a\n  action: hold\n  keywords: [x]\n  colour: red\n", 4, "unknown key 'colour'"),
    ("- name: a\n  action: label\n  keywords: [x]\n", 2, "needs a 'label'"),
    ("- name: a\n  action: hold\n  keywords: [x]\n- name: a\n  action: hold\n  keywords: [y]\n", 4, "already used"),
    ("- name: a\n  action: hold\n  keywords: [x\n", 4, "not valid YAML"),
    ("name: a\n", 1, "list of rules"),
    ("- keywords: [x]\n  action: hold\n", 1, "every rule needs a name"),
    ("- name: Not Kebab\n  keywords: [x]\n  action: hold\n", 1, "use letters, digits and - _ . : only (no spaces)"),
    ("- name: a\n  keywords: [x]\n  action: remove\n  notify_author: maybe\n", 4, "notify_author is true or false"),
    ("- name: a\n  keywords: [x]\n  action: remove\n  notify_author: false\n  message_template: t\n", 4,
     "so message_template would never be used"),
])
def test_invalid_rules_are_rejected_with_the_line_and_the_reason(text, line, reason):
    with pytest.raises(RuleError) as err:
        parse_rules(text, "rules.yaml")
    assert err.value.line == line and reason in err.value.reason
    assert str(err.value).startswith(f"rules.yaml:{line}:")


RULES = parse_rules("""
- name: giveaway
  conditions: {keywords: [giveaway, "t.me"]}
  action: remove
  reason: no giveaways
- name: spammy
  conditions: {scores: {spam: 0.85}}
  action: hold
- name: card-in-public
  conditions: {pii: [card_number]}
  action: remove
  message_template: pii_removed_notice
- name: fresh-links
  conditions:
    regex: "https?://"
    author: {account_age_days_below: 7, followers_below: 50}
    channels: ["r/acme"]
  action: hold
- name: loud-complaint
  conditions: {reach: {followers_at_least: 10000}, scores: {negative: 0.7}}
  action: notify
  notify: care-leads
- name: trusted
  conditions: {author: {removals_at_least: 0}, keywords: [faq]}
  action: approve
- name: repeat
  author: {removals_at_least: 3}
  action: label
  label: repeat-offender
""")


def names(s: Subject) -> list[str]:
    return [m.rule for m in evaluate(RULES, s)]


def test_keywords_match_whole_words_case_insensitively():
    assert names(subject("HUGE Giveaway tonight")) == ["giveaway"]
    assert names(subject("join t.me/scam now")) == ["giveaway"]
    assert names(subject("giveaways are fun")) == []  # not the whole word


def test_scores_are_minimum_probabilities():
    assert names(subject(probabilities={"spam": {"spam": 0.9}})) == ["spammy"]
    assert names(subject(probabilities={"spam": {"spam": 0.8}})) == []


def test_pii_conditions_only_concern_public_posts():
    assert names(subject(pii_types=frozenset({"card_number"}))) == ["card-in-public"]
    assert names(subject(pii_types=frozenset({"card_number"}), is_public=False)) == []
    assert names(subject(pii_types=frozenset({"email"}))) == []
    [m] = evaluate(RULES, subject(pii_types=frozenset({"card_number"})))
    assert m.message_template == "pii_removed_notice"


def test_author_and_channel_conditions_must_all_hold():
    new = dict(account_age_days=2, followers=10, channel="r/acme")
    assert names(subject("see https://x.example", **new)) == ["fresh-links"]
    assert names(subject("see https://x.example", **{**new, "account_age_days": 30})) == []
    assert names(subject("see https://x.example", **{**new, "followers": 500})) == []
    assert names(subject("see https://x.example", **{**new, "channel": "r/other"})) == []
    assert names(subject("see https://x.example", **{**new, "account_age_days": None})) == []  # unknown age
    assert names(subject("no link", **new)) == []


def test_reach_and_removals():
    loud = subject(followers=20_000, probabilities={"sentiment": {"negative": 0.9}})
    [m] = evaluate(RULES, loud)
    assert (m.rule, m.action, m.notify) == ("loud-complaint", "notify", "care-leads")
    assert names(subject(removals=3)) == ["repeat"]
    assert names(subject(removals=2)) == []


def test_every_matching_rule_applies_and_the_strictest_decides():
    found = evaluate(RULES, subject("faq giveaway", probabilities={"spam": {"spam": 0.99}}, removals=4))
    assert [m.rule for m in found] == ["giveaway", "spammy", "trusted", "repeat"]
    assert decisive(found).rule == "giveaway"  # remove beats hold beats approve
    assert decisive(evaluate(RULES, subject("faq"))).action == "approve"
    assert decisive(evaluate(RULES, subject("hello"))) is None


def test_a_rules_file_that_cannot_be_read_is_an_error(tmp_path):
    with pytest.raises(RuleError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")


def test_a_bad_name_is_answered_with_what_a_name_looks_like():
    with pytest.raises(RuleError) as err:
        parse_rules("- name: Not Kebab\n  keywords: [x]\n  action: hold\n", "rules.yaml")
    assert "'Not Kebab' is not a valid name" in err.value.reason and "e.g. 'not-kebab'" in err.value.reason


def test_authors_are_notified_unless_a_rule_says_notify_author_false():
    rules = parse_rules("""
- name: spam-wave
  keywords: [giveaway]
  action: remove
  notify_author: false
- name: rude
  keywords: [idiot]
  action: hold
""")
    assert [(r.name, r.notify_author) for r in rules] == [("spam-wave", False), ("rude", True)]
    [m] = evaluate(rules, subject("giveaway"))
    assert m.notify_author is False
    bundled = {r.name: r.notify_author for r in load_rules(BUNDLED_RULES)}
    assert bundled["crypto-giveaway-spam"] is False and bundled["likely-spam"] is False  # spammers learn nothing
    assert bundled["abusive-language"] is True


def test_unknown_templates_are_the_rules_naming_a_template_nobody_knows():
    rules = parse_rules("""
- name: a
  keywords: [x]
  action: remove
  message_template: pii_removed_notice
- name: b
  keywords: [y]
  action: remove
  message_template: no_such_template
- name: c
  keywords: [z]
  action: hold
""")
    assert [r.name for r in unknown_templates(rules, {"pii_removed_notice"})] == ["b"]
