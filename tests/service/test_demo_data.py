"""The bundled demo is well-formed and its ground truth is consistent: mentions, labels, the outage
spike, threads, customers, knowledge base, templates and moderation rules."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from functools import cache

import jinja2
import yaml

from community.knowledge import parse_article, parse_template
from escalation.handoff import PUBLIC_SECURE_NOTICE
from listener.protocol import NormalizedMention
from models import ROUTE_OUTCOMES
from service.seed import DEMO, DEMO_MENTIONS
from triage.pii import detect_pii, luhn_ok
from triage.protocol import DEFAULT_ISSUE_TYPES, SENSITIVITY_LABELS, SENTIMENT_LABELS

FIELDS = {f.name for f in dataclasses.fields(NormalizedMention)}
LABEL_KEYS = {"issue_type", "sentiment", "sensitivity", "pii", "toxic", "spam", "expected_route"}
PII_TYPES = {"card_number", "email", "phone", "iban", "password", "one_time_code", "national_id"}
DAY = datetime(2026, 11, 20, tzinfo=timezone.utc)
SPIKE_START, SPIKE_END = DAY + timedelta(hours=14), DAY + timedelta(hours=14, minutes=40)
ID_SHAPES = {"x": re.compile(r"[1-9]\d{18}"), "reddit": re.compile(r"[0-9a-z]{7}"), "discourse": re.compile(r"[1-9]\d{3,7}")}
KINDS = {"x": {"post", "reply"}, "reddit": {"post", "comment"}, "discourse": {"forum_post"}}
CHANNELS = {"x": re.compile(r"@AcmeHelp"), "reddit": re.compile(r"r/acme"), "discourse": re.compile(r"community/[a-z-]+")}
# a card-like run of 13-19 digits, optionally grouped by spaces or dashes
CARD_RUN = re.compile(r"(?<![\w#-])\d(?:[ -]?\d){12,18}(?![\w-])")


@cache
def rows() -> tuple[dict, ...]:
    lines = DEMO_MENTIONS.read_text(encoding="utf-8").splitlines()
    return tuple(json.loads(line) for line in lines)


def mentions() -> list[tuple[dict, NormalizedMention]]:
    return [(row, NormalizedMention.from_dict(row)) for row in rows()]


def url_pattern(m: NormalizedMention) -> re.Pattern:
    return {
        "x": re.compile(rf"https://x\.com/{re.escape(m.author_handle or '')}/status/{m.external_id}"),
        "reddit": re.compile(rf"https://www\.reddit\.com/r/acme/comments/{m.conversation_id}/[a-z0-9_]+/"
                             + ("" if m.kind == "post" else rf"{m.external_id}/")),
        "discourse": re.compile(r"https://community\.acme\.example/t/[a-z0-9-]+/\d+/\d+"),
    }[m.platform]


# --- mentions ----------------------------------------------------------------------------------


def test_every_line_is_a_normalized_mention_plus_ground_truth_labels():
    assert len(rows()) >= 300
    for row, m in mentions():
        assert set(row) == FIELDS | {"labels"}, set(row) ^ (FIELDS | {"labels"})
        assert m.platform in ID_SHAPES and ID_SHAPES[m.platform].fullmatch(m.external_id), (m.platform, m.external_id)
        assert m.kind in KINDS[m.platform] and m.is_public and m.event == "upsert" and m.edited_at is None
        assert CHANNELS[m.platform].fullmatch(m.channel or ""), m.channel
        assert url_pattern(m).fullmatch(m.url or ""), m.url
        assert row["created_at"].endswith("Z") and m.created_at.date() == DAY.date()
        assert m.author_id and m.author_handle and m.author_name and m.author_created_at < m.created_at
        assert m.text.strip() and m.lang in ("en", "es", "fr", "de") and isinstance(m.raw, dict)


def test_ids_are_unique_per_platform_and_the_stream_is_chronological():
    seen: set[tuple[str, str]] = set()
    previous = None
    for _, m in mentions():
        assert (m.platform, m.external_id) not in seen
        seen.add((m.platform, m.external_id))
        assert previous is None or m.created_at >= previous
        previous = m.created_at


def test_replies_point_at_earlier_mentions_of_the_same_thread():
    by_key: dict[tuple[str, str], NormalizedMention] = {}
    for _, m in mentions():
        if m.in_reply_to is None:
            assert m.conversation_id == m.external_id and m.kind in ("post", "forum_post")
        else:
            parent = by_key.get((m.platform, m.in_reply_to))
            assert parent is not None, f"{m.external_id} replies to a later or unknown post"
            assert parent.conversation_id == m.conversation_id and m.kind != "post"
        by_key[(m.platform, m.external_id)] = m


def test_every_label_is_in_the_allowed_sets():
    for row in rows():
        labels = row["labels"]
        assert set(labels) == LABEL_KEYS
        assert labels["issue_type"] in DEFAULT_ISSUE_TYPES
        assert labels["sentiment"] in SENTIMENT_LABELS and labels["sensitivity"] in SENSITIVITY_LABELS
        assert labels["expected_route"] in ROUTE_OUTCOMES
        assert set(labels["pii"]) <= PII_TYPES and isinstance(labels["toxic"], bool) and isinstance(labels["spam"], bool)


def test_expected_routes_follow_the_documented_conventions():
    for row, m in mentions():
        lab, route = row["labels"], row["labels"]["expected_route"]
        if lab["sensitivity"] in ("security", "fraud"):
            assert route == "escalate_private", m.text
        elif lab["spam"] or lab["toxic"] or lab["pii"]:
            assert route == "moderate", m.text
        elif route == "broadcast":
            assert lab["issue_type"] == "outage" and SPIKE_START <= m.created_at < SPIKE_END + timedelta(minutes=20)
        if route == "escalate_private":
            assert lab["sensitivity"] in ("security", "fraud"), m.text
        if route == "moderate":
            assert lab["spam"] or lab["toxic"] or lab["pii"], m.text
        if route == "community_answer":
            assert m.platform in ("reddit", "discourse") and m.in_reply_to is None


def test_the_day_has_the_documented_mix():
    issues = Counter(r["labels"]["issue_type"] for r in rows())
    routes = Counter(r["labels"]["expected_route"] for r in rows())
    assert issues["account_access"] >= 55 and issues["billing"] >= 30 and issues["order_delivery"] >= 25
    assert issues["fraud"] + issues["account_security"] >= 30 and issues["praise"] >= 25
    assert sum(r["labels"]["spam"] for r in rows()) >= 15 and sum(r["labels"]["toxic"] for r in rows()) >= 15
    assert sum(1 for r in rows() if r["labels"]["pii"] and r["labels"]["sensitivity"] in ("none", "account")) >= 15
    assert set(routes) == set(ROUTE_OUTCOMES) and min(routes.values()) >= 10
    assert {r["platform"] for r in rows()} == {"x", "reddit", "discourse"}


def test_figurative_fraud_words_are_not_sensitive():
    figurative = [r for r in rows() if re.search(r"\b(scam|fraud|stole|steal|robbed|crime|con|hijacked)\b", r["text"], re.I)
                  and r["labels"]["issue_type"] == "other"]
    assert len(figurative) >= 5
    assert all(r["labels"]["sensitivity"] == "none" and r["labels"]["expected_route"] != "escalate_private"
               for r in figurative)


# --- the outage spike --------------------------------------------------------------------------


def test_the_outage_spike_is_dense_and_the_rest_of_the_day_quiet():
    outage = sorted(m.created_at for row, m in mentions() if row["labels"]["issue_type"] == "outage")
    in_spike = [t for t in outage if SPIKE_START <= t < SPIKE_END]
    densest = max(sum(1 for t in outage if start <= t < start + timedelta(minutes=40)) for start in outage)
    assert len(in_spike) >= 55 and densest >= 40
    per_hour = Counter(t.hour for t in outage if t.hour != 14)
    assert per_hour and max(per_hour.values()) <= 2, per_hour


def test_spike_posts_are_broadcast_and_background_outage_questions_are_not():
    for row, m in mentions():
        lab = row["labels"]
        if lab["issue_type"] != "outage" or lab["toxic"]:
            continue
        during = SPIKE_START <= m.created_at < SPIKE_END + timedelta(minutes=20)
        assert (lab["expected_route"] == "broadcast") == during, m.text


def test_login_trouble_never_bursts_like_an_incident():
    """Log-in questions are steady all day: no 30-minute window on one channel holds 8 of them."""
    for platform in ("x", "reddit", "discourse"):
        times = sorted(m.created_at for row, m in mentions()
                       if m.platform == platform and row["labels"]["issue_type"] == "account_access")
        assert all(sum(1 for t in times if s <= t < s + timedelta(minutes=30)) < 8 for s in times)


# --- personal data -----------------------------------------------------------------------------


def test_pii_labels_match_the_detectors_and_distractors_are_not_pii():
    for row in rows():
        assert set(row["labels"]["pii"]) == {s.type for s in detect_pii(row["text"])}, row["text"]
    clean = " ".join(r["text"] for r in rows() if not r["labels"]["pii"])
    assert re.search(r"#[A-Z]\d{2}-\d{6}", clean) and "1Z999AA10123456784" in clean  # order ids, tracking codes
    assert re.search(r"\$\d+\.\d{2}", clean) and re.search(r"\b(?:Nov|Dec) \d{1,2}\b|\d{4}-\d{2}-\d{2}", clean)


def test_every_card_number_in_a_card_labelled_post_passes_luhn():
    labelled = [r["text"] for r in rows() if "card_number" in r["labels"]["pii"]]
    assert len(labelled) >= 3
    for text in labelled:
        runs = ["".join(ch for ch in run if ch.isdigit()) for run in CARD_RUN.findall(text)]
        assert runs, text
        assert all(luhn_ok(digits) for digits in runs), text
    for row in rows():  # no other post carries a card-like number at all
        if "card_number" not in row["labels"]["pii"]:
            assert not any(luhn_ok(re.sub(r"\D", "", run)) for run in CARD_RUN.findall(row["text"])), row["text"]


def test_sensitive_posts_with_personal_data_still_escalate():
    exposed = [r for r in rows() if r["labels"]["pii"] and r["labels"]["sensitivity"] in ("security", "fraud")]
    assert {p for r in exposed for p in r["labels"]["pii"]} >= {"card_number", "email", "phone", "password"}
    assert all(r["labels"]["expected_route"] == "escalate_private" for r in exposed)


# --- threads and authors -----------------------------------------------------------------------


def test_community_answered_threads_carry_the_accepted_answer():
    data = mentions()
    answered = [m for row, m in data if row["labels"]["expected_route"] == "community_answer"]
    assert {m.platform for m in answered} == {"reddit", "discourse"}
    for root in answered:
        replies = [m for _, m in data if m.platform == root.platform and m.conversation_id == root.external_id
                   and m.in_reply_to is not None]
        marker = ("distinguished", "moderator") if root.platform == "reddit" else ("accepted_answer", True)
        accepted = [m for m in replies if m.raw.get(marker[0]) == marker[1]]
        assert len(accepted) == 1, root.text
        assert accepted[0].created_at > root.created_at


def test_customers_follow_up_and_known_customers_post():
    data = mentions()
    by_author = Counter((m.platform, m.author_handle) for _, m in data)
    assert sum(1 for n in by_author.values() if n >= 2) >= 10
    self_replies = [m for _, m in data if m.platform == "x" and m.in_reply_to and any(
        p.external_id == m.in_reply_to and p.author_handle == m.author_handle for _, p in data)]
    assert len(self_replies) >= 4  # customers following up in their own thread
    with (DEMO / "customers.csv").open(newline="", encoding="utf-8") as fh:
        customers = list(csv.DictReader(fh))
    handles = {("x", c["x_handle"]) for c in customers} | {("reddit", c["reddit_username"]) for c in customers} \
        | {("discourse", c["discourse_username"]) for c in customers}
    assert len(handles & set(by_author)) >= 10
    maria = next(c for c in customers if c["x_handle"] == "maria_music3")
    assert maria["name"] == "Maria Lopez" and ("x", "maria_music3") in by_author


def test_customers_csv_is_fictional_and_complete():
    with (DEMO / "customers.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        customers = list(reader)
    assert reader.fieldnames == ["customer_id", "name", "email", "phone", "plan", "created_at", "x_handle",
                                 "reddit_username", "discourse_username"]
    assert len(customers) == 40 and len({c["customer_id"] for c in customers}) == 40
    for c in customers:
        assert c["name"] and re.fullmatch(r"[^@\s]+@example\.(com|org|net)", c["email"]), c
        assert re.fullmatch(r"\+1-\d{3}-555-01\d{2}", c["phone"]), c["phone"]
        assert c["plan"] in ("free", "premium", "family", "student")
        datetime.strptime(c["created_at"], "%Y-%m-%d")


# --- knowledge base, templates, moderation rules -----------------------------------------------


def articles() -> dict[str, dict]:
    return {p.stem: parse_article(p) for p in sorted((DEMO / "kb").glob("*.md"))}


def test_knowledge_base_front_matter_is_complete():
    kb = articles()
    assert len(kb) == 15
    for stem, a in kb.items():
        assert a["slug"] == stem and a["title"]
        assert a["url"] == f"https://help.acme.example/articles/{stem}"
        assert a["tags"] and a["issue_types"] and set(a["issue_types"]) <= set(DEFAULT_ISSUE_TYPES)
        assert len(a["body"]) > 400 and a["body"].startswith("# ")
    referenced = set(re.findall(r"https://help\.acme\.example/articles/([a-z0-9-]+)",
                                " ".join(r["text"] for r in rows()) + " ".join(a["body"] for a in kb.values())))
    assert referenced and referenced <= set(kb), referenced - set(kb)


X_CONTEXT = {"author_name": "Maximilian Ruiz", "article_url": "https://help.acme.example/articles/" + "x" * 25,
             "secure_link": "https://care.acme.example/secure/" + "t" * 43, "ttl_hours": "24",
             "status_message": "We're investigating playback errors on all devices and will update you in 30 minutes."}


def test_templates_render_within_the_x_limit():
    assert len(X_CONTEXT["author_name"]) == 15 and len(X_CONTEXT["article_url"]) == 60
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    kb = articles()
    templates = {p.stem: parse_template(p) for p in sorted((DEMO / "templates").glob("*.yaml"))}
    assert len(templates) == 15 and all(stem == t["name"] for stem, t in templates.items())
    for t in templates.values():
        assert set(t["variants"]) == {"friendly", "formal"} and t["channel"] in ("any", "x", "reddit", "discourse")
        assert set(t["issue_types"]) <= set(DEFAULT_ISSUE_TYPES)
        assert t["article_slug"] is None or t["article_slug"] in kb
        for tone, body in t["variants"].items():
            text = env.from_string(body).render(**X_CONTEXT)
            assert 0 < len(text) <= 280, (t["name"], tone, len(text))
            if "article_url" in body:
                assert t["article_slug"], t["name"]


def test_the_reserved_templates_say_what_the_pipeline_needs():
    t = {p.stem: parse_template(p) for p in (DEMO / "templates").glob("*.yaml")}
    assert {"secure_link_notice", "secure_link_dm", "pii_removed_notice", "outage_status", "outage_fixed"} <= set(t)
    assert t["secure_link_notice"]["variants"]["friendly"] == PUBLIC_SECURE_NOTICE
    assert all("{{" not in body for body in t["secure_link_notice"]["variants"].values())  # no detail, no name
    assert all("{{ secure_link }}" in body for body in t["secure_link_dm"]["variants"].values())
    assert all("{{ status_message }}" in body for body in t["outage_status"]["variants"].values())
    issue_types = {i for tpl in t.values() for i in tpl["issue_types"]}
    assert {"account_access", "outage", "billing", "order_delivery", "product_question", "cancellation"} <= issue_types


RULE_KEYS = {"name", "conditions", "action", "reason", "label", "notify", "message_template", "notify_author"}
CONDITION_KEYS = {"keywords", "regex", "scores", "pii", "author", "reach", "channels"}


def test_moderation_rules_use_the_documented_format():
    text = (DEMO / "moderation_rules.yaml").read_text(encoding="utf-8")
    assert text.startswith("#")  # the format is documented at the top
    rules = yaml.safe_load(text)
    assert len(rules) == 6 and len({r["name"] for r in rules}) == 6
    used = set()
    for r in rules:
        assert set(r) <= RULE_KEYS and r["reason"] and r["conditions"]
        assert r["action"] in ("hold", "remove", "approve", "lock", "label", "notify")
        assert set(r["conditions"]) <= CONDITION_KEYS
        used |= set(r["conditions"])
        if "regex" in r["conditions"]:
            re.compile(r["conditions"]["regex"])
        if r["action"] == "notify":
            assert r["notify"]
        if "message_template" in r:
            assert (DEMO / "templates" / f"{r['message_template']}.yaml").exists()
        assert r.get("notify_author", True) in (True, False)
    assert used >= {"keywords", "regex", "scores", "author", "reach", "channels"}


def test_the_keyword_rule_catches_demo_spam_and_nothing_else():
    rules = {r["name"]: r for r in yaml.safe_load((DEMO / "moderation_rules.yaml").read_text(encoding="utf-8"))}
    words = rules["crypto-giveaway-spam"]["conditions"]["keywords"]

    def hit(text: str) -> bool:
        return any(re.search(rf"(?<!\w){re.escape(w)}(?!\w)", text, re.I) for w in words)

    spam = [r["text"] for r in rows() if r["labels"]["spam"]]
    assert sum(map(hit, spam)) >= 0.6 * len(spam)
    assert not [r["text"] for r in rows() if not r["labels"]["spam"] and hit(r["text"])]
