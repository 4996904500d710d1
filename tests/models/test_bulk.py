"""Batch writes with Core (:mod:`models.bulk`) and the portable ``json_array``, on SQLite and on
PostgreSQL: ids come back in the rows' order, updates write what changed, stored numbers come back
exactly."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from models import Conversation, TriageResult
from models.base import json_array
from models.bulk import Columns, Record, add_rows, insert_rows, records, update_rows
from models.db import Database
from tests.listener.test_ingest import mention

SCORES = {"toxicity": {"probabilities": {"offensive": 0.30000000000000004, "not_offensive": 1e-7}},
          "issue_type": {"score": 0.1 + 0.2}, "pii": [{"type": "email", "start": 3, "end": 9}]}


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else \
        f"sqlite+aiosqlite:///{tmp_path}/bulk.db"
    db = Database(url)
    await db.upgrade()
    yield db
    await db.close()


async def test_insert_rows_returns_each_rows_id_in_the_order_given(database):
    keys = [f"x:{k}" for k in ("b", "a", "d", "c")]
    async with database.session() as s:
        ids = await insert_rows(s, Conversation, [{"thread_key": k, "platform": "x"} for k in keys], ("thread_key",))
        await s.commit()
        stored = dict((await s.execute(select(Conversation.thread_key, Conversation.id))).all())
        status = set(await s.scalars(select(Conversation.status)))
    assert ids == [stored[k] for k in keys] and len(set(ids)) == 4
    assert status == {"open"}  # column defaults apply as through the ORM
    async with database.session() as s:
        assert await insert_rows(s, Conversation, [], ("thread_key",)) == []
        await add_rows(s, Conversation, [])


async def test_update_rows_writes_each_rows_changes_grouped_by_columns(database):
    async with database.session() as s:
        ids = await insert_rows(s, Conversation, [{"thread_key": f"x:{i}", "platform": "x"} for i in range(3)],
                                ("thread_key",))
        await update_rows(s, Conversation, [(ids[0], {"status": "resolved"}), (ids[1], {"tags": ["a"], "status": "x"}),
                                            (ids[2], {})])
        await s.commit()
        rows = {r.id: (r.status, r.tags) for r in await s.execute(select(Conversation.id, Conversation.status,
                                                                           Conversation.tags))}
    assert rows == {ids[0]: ("resolved", []), ids[1]: ("x", ["a"]), ids[2]: ("open", [])}


def test_a_record_keeps_only_what_differs_from_what_it_holds():
    stored = Record({"id": 4, "text": "a", "url": None}, 4)
    stored.set(text="a", url="u")
    assert stored.changes == {"url": "u"} and stored.url == "u"
    new = Record({"text": "b"})
    new.set(text="c", conversation_id=9)
    assert new.changes == {} and new.values == {"text": "c", "conversation_id": 9}


async def test_json_array_reads_parts_of_a_document_with_their_numbers_exact(database):
    async with database.session() as s:
        await store_scores(s, SCORES)
        await s.commit()
        parts = Columns(TriageResult.id, TriageResult.scores[("issue_type", "score")].as_float().label("conf"),
                        json_array(TriageResult.scores[("toxicity", "probabilities")], TriageResult.scores["pii"],
                                   TriageResult.scores[("spam", "probabilities")]).label("parts"))
        [row] = (await s.execute(select(*parts))).all()
    [rec] = records(row, parts)
    assert rec.conf == SCORES["issue_type"]["score"]
    assert rec.parts == [SCORES["toxicity"]["probabilities"], SCORES["pii"], None]


async def store_scores(s, scores: dict) -> int:
    """A stored mention with a triage row holding ``scores``; its id."""
    from listener.ingest import ingest_batch

    [mention_id] = [r.mention_id for r in await ingest_batch(s, [mention("1")])]
    await add_rows(s, TriageResult, [dict(mention_id=mention_id, model_version="t", sentiment="neutral",
                                          sensitivity="none", issue_type="other", toxicity="not_offensive",
                                          spam="ham", scores=scores)])
    return mention_id


async def test_nothing_is_written_twice_by_ingesting_a_batch_again(database):
    from listener.ingest import ingest_batch
    from models import Author, Mention

    batch = [mention(str(i), author_id=str(i % 2)) for i in range(4)]
    for _ in range(2):
        async with database.session() as s:
            await ingest_batch(s, batch)
            await s.commit()
    async with database.session() as s:
        counts = [await s.scalar(select(func.count()).select_from(m)) for m in (Mention, Author, Conversation)]
    assert counts == [4, 2, 4]
