"""Posts a community vouches for: written by one of its moderators or staff — a Reddit post
distinguished as a moderator's or an admin's in one of the brand's own subreddits
(:func:`community.harvest.distinguished`: elsewhere anyone can moderate a subreddit of their own), a
Discourse post whose author is staff, a moderator or an admin (the forum is the brand's).

Moderation rules pass them by unless a rule says ``moderators_exempt: false`` (AutoModerator's key,
and its default), and the spam and toxicity classifiers do not hold them: a moderator's answer
linking the help centre reads like SMS spam to a classifier trained on SMS, and holding it hides
the answer the thread needed. Nor is such a post escalated on its security or fraud words (a
moderator's "we never ask for your password by text; if you entered your details, change it"): it
speaks to others, and a case for it sent the brand's own moderator a secure link. Only a writer who
says it happened to them (:func:`own_trouble`: "my account was hacked") is escalated like anyone.
Personal data in such a post is still hidden (``builtin:pii``): trust
speaks for the writer's intent, not for the data in the post. An accepted answer is not vouched for
by itself (on Discourse a topic's author may accept any reply, their own second account's too), nor
is anything on X, which has no such marks.
"""

from __future__ import annotations

from typing import Any

from community.harvest import distinguished
from triage.rules import tells_own_trouble

DISCOURSE_STAFF = ("staff", "moderator", "admin")  # flags of Discourse's post serializer


def vouched_for(mention: Any, own_subreddits: frozenset[str]) -> bool:
    """Is this post one its community vouches for (see the module docstring)?"""
    raw = mention.raw if isinstance(mention.raw, dict) else {}
    if mention.platform == "discourse":
        return any(raw.get(flag) is True for flag in DISCOURSE_STAFF)
    return distinguished(mention, own_subreddits)


def own_trouble(mention: Any) -> bool:
    """Does the post say the takeover, theft or charge happened to its writer? (Read for vouched posts:
    their security or fraud words escalate only then.)"""
    return tells_own_trouble(mention.text or "")
