"""An erasure looks for the person's accounts in other people's platform payloads as whole values
(service.erasure, service.privacy.names_account), on SQLite and PostgreSQL: a short user id or
handle that is only part of another value (a post id, an offset, a longer handle, a word of a
profile) leaves the post's payload as it was; where the payload does name the account (as a value,
a number under an id's key, a path segment or an @-mention) the keys that name accounts go."""

from __future__ import annotations

import pytest
from privacy_support import SECRET_KEY
from sqlalchemy import select

from models import Mention
from service import erasure
from service.erasure import Subject
from service.privacy import names_account

NAMING = {  # each names Bob (user id "111", handle "bob") where payloads name accounts
    "tomnum": {"in_reply_to_user_id": 111},
    "tomstr": {"in_reply_to_user_id": "111"},
    "tomat": {"entities": {"mentions": [{"username": "@BOB", "start": 0, "end": 4}]}},
    "tomavatar": {"reply_to_user": {"username": "someone",
                                    "avatar_template": "/user_avatar/forum/bob/{size}/1.png"}},
    "tomkeyed": {"includes": {"users": {"111": {"name": "B."}}}},
}
NOT_NAMING = {  # "111" and "bob" only as parts of other values, or outside the keys that name accounts
    "tomids": {"id": "91112", "conversation_id": "1110", "in_reply_to_user_id": "51110",
               "public_metrics": {"like_count": 111}},
    "tomlonger": {"entities": {"mentions": [{"username": "bobby", "id": "1112", "start": 0, "end": 6}]}},
    "tomoffset": {"entities": {"mentions": [{"username": "sam", "id": "id-sam", "start": 111, "end": 115}]}},
    "tomprofile": {"includes": {"users": [{"username": "bobcat", "description": "I have 111 cats, see /bob.example"}]}},
    "tomtext": {"quoted": "@bob said 111", "in_reply_to_screen_name": "tom"},
}


@pytest.mark.parametrize(("raw", "named"), [(raw, True) for raw in NAMING.values()]
                         + [(raw, False) for raw in NOT_NAMING.values()])
def test_names_account_matches_whole_values_only(raw, named):
    assert names_account(raw, {"bob"}, {"111"}) is named


async def test_a_short_id_or_handle_inside_other_values_leaves_others_payloads_alone(world):
    w = world
    await w.ingest(w.post("zqx my order is late", author="bob", name="Bob B", user_id="111"))
    posts = {}
    for word, raw in (NAMING | NOT_NAMING).items():
        posts[word] = await w.ingest(w.post(f"{word} order 111 for bob", author="tom_b", raw=raw))

    counts = await erasure.erase(w.db, Subject(platform="x", user_id="111"), actor="dpo", reason="art 17",
                                 secret=SECRET_KEY)
    assert counts["posts"] == 1
    assert counts["others_payloads"] == len(NAMING)
    async with w.db.session() as s:
        raws = {m.text.split()[0]: m.raw for m in await s.scalars(select(Mention).where(Mention.id.in_(posts.values())))}
    for word, raw in NOT_NAMING.items():  # as ingested: untouched
        assert {k: v for k, v in raws[word].items() if k not in ("text", "user")} == raw, word
    for word, raw in NAMING.items():  # the keys naming accounts gone, the rest (his own account) kept
        rest = str({k: v for k, v in raws[word].items() if k != "text"}).lower()  # his words are his
        assert "111" not in rest and "bob" not in rest, word
        assert raws[word]["user"] == {"screen_name": "tom_b", "name": "tom_b"}
