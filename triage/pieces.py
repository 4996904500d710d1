"""Long posts, read as the tweet-sized pieces they are made of.

The heads learned on tweets and short bank queries, and the encoder reads 128 tokens and averages
them: in a forum post or a Reddit story, the one sentence that matters ("anyway today the email on
my account is one I have never seen") is diluted by the paragraphs around it, or cut off unread.
So a post longer than a tweet is also scored piece by piece, each piece a run of whole sentences of
at most a tweet's length, and the piece that says most of what matters speaks for the post
(``engine.per_text``). Tweets are never split.
"""

from __future__ import annotations

import re

LONG_CHARS = 320  # longer than any tweet (280) with room for a handle or two
PIECE_CHARS = 280
MAX_PIECES = 24  # the first ~6,700 characters; the keyword rules still read all of it
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\s*\n+\s*")


def pieces(text: str) -> list[str]:
    """The pieces of a long post (none for a text of tweet length): consecutive sentences joined
    while they fit in PIECE_CHARS; a longer sentence is cut between words."""
    text = text.strip()
    if len(text) <= LONG_CHARS:
        return []
    out: list[str] = []
    current = ""
    for sentence in (s for s in _SENTENCE_END.split(text) if s and s.strip()):
        for part in _fit(sentence.strip()):
            if current and len(current) + 1 + len(part) <= PIECE_CHARS:
                current = f"{current} {part}"
                continue
            if current:
                out.append(current)
                if len(out) == MAX_PIECES:
                    return out
            current = part
    if current and len(out) < MAX_PIECES:
        out.append(current)
    return out


def _fit(sentence: str) -> list[str]:
    """A sentence in parts of at most PIECE_CHARS, cut at spaces where there are any."""
    parts = []
    while len(sentence) > PIECE_CHARS:
        cut = sentence.rfind(" ", 0, PIECE_CHARS + 1)
        cut = cut if cut > 0 else PIECE_CHARS
        parts.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    if sentence:
        parts.append(sentence)
    return parts
