"""Posts a community vouches for: written by one of the channel's moderators or staff (a Reddit
comment or post distinguished as a moderator's or an admin's; a Discourse post whose author is
staff, a moderator or an admin), or an answer the community accepted
(:func:`community.harvest.accepted_source`).

Moderation rules pass them by unless a rule says ``moderators_exempt: false`` (AutoModerator's key,
and its default), and the spam and toxicity classifiers do not hold them: a moderator's answer
linking the help centre reads like SMS spam to a classifier trained on SMS, and holding it hides
the answer the thread needed. Personal data in such a post is still hidden (``builtin:pii``): trust
speaks for the writer's intent, not for the data in the post. X has no such marks.
"""

from __future__ import annotations

from typing import Any

from community.harvest import ACCEPTED_DISTINGUISHED, accepted_source

DISCOURSE_STAFF = ("staff", "moderator", "admin")  # flags of Discourse's post serializer


def vouched_for(mention: Any) -> bool:
    """Is this post one its community vouches for (see the module docstring)?"""
    raw = mention.raw if isinstance(mention.raw, dict) else {}
    if mention.platform == "reddit" and raw.get("distinguished") in ACCEPTED_DISTINGUISHED:
        return True
    if mention.platform == "discourse" and any(raw.get(flag) is True for flag in DISCOURSE_STAFF):
        return True
    return accepted_source(mention) is not None
