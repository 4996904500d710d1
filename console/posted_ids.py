"""The platform's id of a reply a person found posted, read from what they paste: the id itself or
the reply's address. It is stored as the connector would have stored it (``Reply.external_ids``), so
a bot reply settled this way can still be deleted on its platform (:func:`community.replybot.revert_reply`).

Only what each connector itself records is accepted: a tweet or direct-message event id on X
(``x.com/<name>/status/<id>``), a comment's fullname on Reddit (``t1_<id>``, from its permalink),
``<topic>/<post number>`` on Discourse (``/t/<slug>/<topic>/<number>``, on the forum's own host).
Anything else is refused with what was expected, never stored as typed.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MAX_PASTED = 500
_X_ID = re.compile(r"\d{1,25}")
_X_HOSTS = ("x.com", "twitter.com", "mobile.x.com", "mobile.twitter.com", "www.x.com", "www.twitter.com")
_X_PATH = re.compile(r"/(?:[A-Za-z0-9_]{1,50}|i/web)/status(?:es)?/(\d{1,25})(?:/.*)?")
_REDDIT_ID = re.compile(r"(?:t1_)?([a-z0-9]{1,13})")
_REDDIT_HOSTS = ("reddit.com", "www.reddit.com", "old.reddit.com", "new.reddit.com", "np.reddit.com")
# /r/<sub>/comments/<post>/<slug>/<comment>/ or /r/<sub>/comments/<post>/comment/<comment>/
_REDDIT_PATH = re.compile(r"/r/[A-Za-z0-9_]{1,50}/comments/[a-z0-9]{1,13}/[^/]+/([a-z0-9]{1,13})/?")
_DISCOURSE_KEY = re.compile(r"(\d{1,18})/(\d{1,9})")
_DISCOURSE_PATH = re.compile(r"/t/(?:[^/]+/)?(\d{1,18})/(\d{1,9})/?")
_OTHER = re.compile(r"[A-Za-z0-9_:./-]{1,200}")
ANY_ID = "the reply's id on its platform (letters, digits, _ : . / -)"
EXPECTED = {
    "x": "the reply's tweet id (digits) or its address on X (x.com/<name>/status/<id>)",
    "reddit": "the comment's id (t1_…) or its permalink on Reddit (…/comments/<post>/<title>/<comment>/)",
    "discourse": "the post's <topic>/<number> or its address on the forum (/t/<slug>/<topic>/<number>)",
}


class NotAnId(ValueError):
    """What was pasted names no reply of this platform (the message says what would)."""


def posted_id(platform: str, pasted: str | None, *, visibility: str = "public", post_url: str | None = None,
              post_id: str | None = None) -> str | None:
    """The reply's id from ``pasted`` (None when nothing was pasted). ``post_url`` and ``post_id``:
    the post the reply answers (its forum's host must match; its own id is not the reply's)."""
    raw = (pasted or "").strip()
    if not raw:
        return None
    if len(raw) > MAX_PASTED:
        raise NotAnId(f"that is longer than any id or address ({MAX_PASTED} characters at most)")
    if platform == "reddit" and visibility == "private":
        raise NotAnId("Reddit gives no id for a private message: leave the id empty")
    found = _read(platform, raw, post_url)
    if found is None:
        raise NotAnId(f"paste {EXPECTED.get(platform, ANY_ID)}: that was neither")
    if post_id is not None and found == post_id:
        raise NotAnId("that is the post being answered, not our reply: paste the reply's own id or address")
    return found


def _read(platform: str, raw: str, post_url: str | None) -> str | None:
    url = urlsplit(raw) if raw.lower().startswith(("https://", "http://")) else None
    if platform == "x":
        if url is None:
            return raw if _X_ID.fullmatch(raw) else None
        match = _X_PATH.fullmatch(url.path) if (url.hostname or "") in _X_HOSTS else None
        return match.group(1) if match else None
    if platform == "reddit":
        if url is None:
            match = _REDDIT_ID.fullmatch(raw.lower())
            return f"t1_{match.group(1)}" if match else None
        match = _REDDIT_PATH.fullmatch(url.path) if (url.hostname or "") in _REDDIT_HOSTS else None
        return f"t1_{match.group(1)}" if match else None
    if platform == "discourse":
        if url is None:
            match = _DISCOURSE_KEY.fullmatch(raw)
        else:
            forum = urlsplit(post_url).hostname if post_url else None
            if forum is not None and url.hostname != forum:
                raise NotAnId(f"that address is not on the forum of the post ({forum})")
            match = _DISCOURSE_PATH.fullmatch(url.path)
        return f"{int(match.group(1))}/{int(match.group(2))}" if match else None
    return raw if url is None and _OTHER.fullmatch(raw) else None
