"""What a person pastes to say where an interrupted reply is posted becomes the id its connector would
have recorded, or is refused saying what would do; never stored as typed."""

from __future__ import annotations

import pytest

from console.posted_ids import NotAnId, posted_id

FORUM = "https://forum.example.com/t/login-loop/812/1"


@pytest.mark.parametrize("platform, pasted, expected", [
    ("x", " 1790000000000000001 ", "1790000000000000001"),
    ("x", "https://x.com/brand/status/1790000000000000001?s=20", "1790000000000000001"),
    ("x", "https://twitter.com/brand/status/1790000000000000001/photo/1", "1790000000000000001"),
    ("x", "https://x.com/i/web/status/1790000000000000001", "1790000000000000001"),
    ("reddit", "t1_kx3p9q2", "t1_kx3p9q2"),
    ("reddit", "KX3P9Q2", "t1_kx3p9q2"),
    ("reddit", "https://www.reddit.com/r/app/comments/1abcde/login_loop/kx3p9q2/", "t1_kx3p9q2"),
    ("reddit", "https://old.reddit.com/r/app/comments/1abcde/comment/kx3p9q2/?context=3", "t1_kx3p9q2"),
    ("discourse", "812/4", "812/4"),
    ("discourse", "https://forum.example.com/t/login-loop/812/4", "812/4"),
    ("discourse", "https://forum.example.com/t/812/4/", "812/4"),
    ("x", "", None),
    ("x", "   ", None),
])
def test_an_id_or_address_becomes_the_connectors_id(platform, pasted, expected):
    assert posted_id(platform, pasted, post_url=FORUM if platform == "discourse" else None) == expected


@pytest.mark.parametrize("platform, pasted, why", [
    ("x", "https://x.com/brand", "tweet id"),
    ("x", "https://evil.example/brand/status/1790000000000000001", "tweet id"),
    ("x", "javascript:alert(1)", "tweet id"),
    ("x", "1" * 501, "longer than"),
    ("reddit", "https://www.reddit.com/r/app/comments/1abcde/login_loop/", "permalink"),  # the post, not a comment
    ("reddit", "https://reddit.evil.example/r/app/comments/1abcde/x/kx3p9q2/", "permalink"),
    ("discourse", "https://forum.example.com/t/login-loop/812", "<topic>/<number>"),
    ("discourse", "https://other.example.com/t/login-loop/812/4", "not on the forum of the post"),
    ("webhook", "https://example.com/posts/1", "the reply's id"),
])
def test_anything_else_is_refused_saying_what_would_do(platform, pasted, why):
    with pytest.raises(NotAnId, match=why.replace("(", r"\(")):
        posted_id(platform, pasted, post_url=FORUM if platform == "discourse" else None)


def test_the_answered_post_is_not_the_reply_and_reddit_messages_have_no_id():
    with pytest.raises(NotAnId, match="the post being answered"):
        posted_id("x", "https://x.com/dana/status/1780000000000000000", post_id="1780000000000000000")
    with pytest.raises(NotAnId, match="no id for a private message"):
        posted_id("reddit", "t1_kx3p9q2", visibility="private")
    assert posted_id("reddit", "", visibility="private") is None
