"""Long posts are also read as the tweet-sized pieces they are made of; tweets never are."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from triage.pieces import LONG_CHARS, MAX_PIECES, PIECE_CHARS, pieces

STORY = ("I've used the app since 2019 and it has mostly been great. The discover playlists are good and car mode "
         "works with my old stereo. I moved house last month and set everything up again on the new wifi, which "
         "took ages because the router is in the garage. Anyway, today all my playlists were renamed in Russian "
         "and the email on the account is one I have never seen!")


def words(text: str) -> list[str]:
    return re.findall(r"\S+", text)


def test_a_tweet_is_never_split():
    assert pieces("@AcmeHelp " + "x" * 270) == []
    assert pieces("a" * LONG_CHARS) == []


def test_a_long_post_becomes_runs_of_whole_sentences_of_tweet_length():
    out = pieces(STORY)
    assert len(out) >= 2 and all(len(p) <= PIECE_CHARS for p in out)
    assert out[-1].endswith("one I have never seen!") and out[-1].startswith("Anyway")  # whole sentences
    assert words(" ".join(out)) == words(STORY)  # nothing lost, nothing reordered


def test_a_hostile_text_without_spaces_or_stops_is_cut_and_capped():
    out = pieces("A" * 100_000)
    assert len(out) == MAX_PIECES and all(len(p) == PIECE_CHARS for p in out)


@given(st.text(min_size=LONG_CHARS + 1, max_size=3000))
def test_any_long_text_gives_pieces_of_at_most_a_tweet_in_order(text):
    out = pieces(text)
    if len(text.strip()) <= LONG_CHARS:  # its length was spacing around a tweet: a tweet is not split
        assert out == []
        return
    assert 1 <= len(out) <= MAX_PIECES and all(0 < len(p) <= PIECE_CHARS for p in out)
    read, whole = "".join("".join(out).split()), "".join(text.split())
    assert whole.startswith(read)  # the text's characters in order, only spacing and the cap's tail left out
