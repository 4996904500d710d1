"""The shape of a person's data export (:mod:`service.privacy_export`): which columns of each row it
holds (never a token's or a cookie's hash, a receiver's address, a dead letter's error), and what
it leaves out and why, listed in the document itself so the person reading it knows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from service.privacy_payloads import OTHER_ACCOUNTS

AUTHOR_FIELDS = ("id", "platform", "handle", "display_name", "platform_user_id", "followers",
                 "account_created_at", "customer_id", "banned", "created_at")
IDENTITY_FIELDS = ("id", "platform", "handle", "platform_user_id", "customer_id", "verified_at", "source", "created_at")
CUSTOMER_FIELDS = ("id", "external_ref", "name", "email", "phone", "plan", "notes", "attributes", "created_at")
POST_FIELDS = ("id", "platform", "external_id", "author_id", "conversation_id", "kind", "channel", "is_public",
               "text", "url", "lang", "created_at", "ingested_at", "edited_at", "in_reply_to", "hidden", "deleted")
TRIAGE_FIELDS = ("model_version", "sentiment", "sensitivity", "escalate", "issue_type", "toxicity", "spam",
                 "pii_exposed", "language", "priority", "scores", "created_at")
ROUTE_FIELDS = ("outcome", "reason", "confidence", "details", "router_version", "acted_at", "created_at")
REPLY_FIELDS = ("id", "mention_id", "case_id", "platform", "visibility", "kind", "text", "template", "status",
                "error", "external_ids", "sent_by", "created_at", "sent_at")
ACTION_FIELDS = ("id", "action", "rule", "reason", "actor", "status", "details", "created_at")
CONVERSATION_FIELDS = ("id", "platform", "status", "tags", "created_at", "last_activity_at")
CASE_FIELDS = ("id", "conversation_id", "customer_id", "author_id", "opened_by_mention_id", "category", "status",
               "identity_pending", "assigned_to", "created_at", "first_response_due", "resolution_due",
               "first_response_at", "resolved_at")
MESSAGE_FIELDS = ("id", "sender", "user_id", "mention_id", "body", "created_at")
LINK_FIELDS = ("id", "issued_by", "created_at", "expires_at", "used_at", "revoked_at")  # never token_hash
SESSION_FIELDS = ("id", "link_id", "created_at", "expires_at", "revoked_at", "verified_at", "codes_sent",
                  "failed_attempts", "lockouts", "locked_until")  # never the cookie's or the code's hash
AUDIT_FIELDS = ("id", "at", "actor", "action", "object_type", "object_id", "reason", "details")
ANSWER_FIELDS = ("id", "platform", "source", "active", "created_at")  # and the person's half (see _community)
DELIVERY_FIELDS = ("id", "subscription_id", "event_id", "event_type", "status", "attempts", "last_status",
                   "last_error", "created_at", "next_attempt_at", "delivered_at")  # never the receiver's url or secret
DEAD_LETTER_FIELDS = ("id", "topic", "attempts", "failed_at")  # never the error's text (see NOT_INCLUDED)

NOT_INCLUDED = (
    ("secure links' tokens and their hashes; customer sessions' cookie and code hashes",
     "credentials that open the private channel: never handed out, not even to the person"),
    ("other people's posts in the person's threads, the brand's replies to them, and case messages that quote them",
     "other people's data"),
    ("fields of a post's platform payload (raw) that name other accounts: " + ", ".join(sorted(OTHER_ACCOUNTS)),
     "they identify other people (the accounts replied to, mentioned or included)"),
    (("the other half of a community answer: the question or the answer another person wrote, with that "
      "answer's id and link"), "another person's words"),
    ("the receiving address and the signing secret of outgoing webhooks",
     "the receiver's credentials (an address often embeds one); the subscription id names the receiver"),
    ("dead letters' error messages", "the error of a failed batch may quote other people's posts in it"),
    (("on a case someone else's account opened, where the person verified as their customer record in the "
      "private chat (verified_session): the other visitors' sessions, and the chat if another visitor verified "
      "there as someone else"), "the chat cannot be told apart between the visitors: it may be another person's"),
    ("dead letters whose payload could not be decoded",
     "they cannot be matched to anyone; the retention purge removes them"),
    (("the content of posts deleted on X (or withheld there, or hidden by a protected or suspended "
      "account) and of Reddit posts their author deleted (text, the title in a Reddit link, platform "
      "payload): they read \"[deleted on its platform]\""),
     "removed from the service when the platform reported the deletion, as its terms require; no longer held"),
)
BUS_NOT_CHECKED = ("dead letters on the message bus (posts that failed processing)",
                   ("not checked: this export had no access to the bus (the in-process bus lives inside the running "
                    "`socialcare run`; an admin finds the person's on /admin/deadletters)"))


def fields(obj: Any, names: Sequence[str]) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in names}


def json_default(value: Any) -> Any:
    """For ``json.dumps``: datetimes as ISO 8601, sets as sorted lists."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
