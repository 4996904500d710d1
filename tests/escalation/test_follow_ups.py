"""While a customer's private case is open, their further public posts join it instead of getting a
public bot answer: a takeover victim's "reset it, but my playlists are gone" is answered in the case,
where the agent sees the whole story. Through the real pipeline and triage models."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from escalation_support import escalation_settings
from sqlalchemy import select

from escalation.cases import resolve
from listener.protocol import NormalizedMention
from models import Case, CaseMessage, Mention, Reply, RouteDecision

MARIA = {"author_id": "4000000003", "author_handle": "maria_music3", "author_name": "Maria"}
TOM = {"author_id": "4000000009", "author_handle": "tom_listens", "author_name": "Tom"}
QUESTION = "@AcmeHelp how do I reset my password? the reset email never arrives"


def tweet(external_id: str, text: str, thread: str | None = None, **author: str) -> NormalizedMention:
    return NormalizedMention(platform="x", external_id=external_id, text=text, created_at=datetime.now(UTC),
                             conversation_id=thread or external_id, in_reply_to=thread, lang="en", kind="post",
                             is_public=True, channel="@AcmeHelp", **author)


async def decision_of(rt, external_id: str) -> RouteDecision:  # noqa: ANN001
    async with rt.db.session() as s:
        return await s.scalar(select(RouteDecision).join(Mention, Mention.id == RouteDecision.mention_id)
                              .where(Mention.external_id == external_id))


async def step(rt, *mentions: NormalizedMention) -> None:  # noqa: ANN001
    await rt.submit(list(mentions))
    await rt.pipeline.wait_idle(timeout=120)


async def in_cases(rt) -> set[str]:  # noqa: ANN001
    """The external ids of every post kept on a case."""
    async with rt.db.session() as s:
        return set(await s.scalars(select(Mention.external_id).join(CaseMessage, CaseMessage.mention_id == Mention.id)))


def reddit_post(external_id: str, text: str, author: str) -> NormalizedMention:
    return NormalizedMention(platform="reddit", external_id=external_id, text=text, created_at=datetime.now(UTC),
                             author_id=f"t2_{author}", author_handle=author, conversation_id=external_id, kind="post",
                             is_public=True, channel="r/acme")


@pytest.fixture
async def rt(tmp_path, sqlite_url, smtp_sink, triager):
    """The real pipeline, with the demo brand's knowledge base, started."""
    from service.runtime import Runtime
    from service.seed import seed_demo

    runtime = await Runtime.open(escalation_settings(tmp_path, sqlite_url, smtp_sink.port), triager=triager,
                                 with_connectors=False)
    try:
        await seed_demo(runtime.db)
        await runtime.start()
        yield runtime
    finally:
        await runtime.close()


@pytest.mark.timeout(300)
async def test_posts_of_a_customer_with_an_open_case_join_it_until_it_is_resolved(rt):
    await step(rt, tweet("101", "@AcmeHelp someone hacked my account and changed my email", **MARIA))
    opened = await decision_of(rt, "101")
    assert opened.outcome == "escalate_private" and not opened.details.get("follow_up")

    # the same question: from Tom it is answered in public; from Maria, in her case
    await step(rt, tweet("102", QUESTION, **TOM), tweet("103", QUESTION, thread="101", **MARIA))
    assert (await decision_of(rt, "102")).outcome in ("auto_answer", "agent_queue")
    follow_up = await decision_of(rt, "103")
    async with rt.db.session() as s:
        case = await s.scalar(select(Case))
        assert (follow_up.outcome, follow_up.details["follow_up"], follow_up.details["case_id"]) == \
            ("escalate_private", True, case.id)
        assert follow_up.reason.startswith(f"follow-up while case #{case.id} (security) is open")
        assert await in_cases(rt) == {"101", "103"}
        maria_replies = list(await s.scalars(select(Reply).join(Mention, Mention.id == Reply.mention_id)
                                             .where(Mention.external_id.in_(["101", "103"]))))
        # one notice in the thread and one secure link: nothing answered in public beside them
        assert sorted((r.kind, r.visibility) for r in maria_replies) == [("secure_link", "public"),
                                                                           ("secure_link_dm", "private")]
        assert await s.scalar(select(Case.id).where(Case.id != case.id)) is None

    # elsewhere, a post with nothing to answer is not met with another notice
    await step(rt, tweet("104", "@AcmeHelp love the new discover weekly, great picks this week", **MARIA))
    assert (await decision_of(rt, "104")).outcome == "ignore"

    async with rt.db.session() as s:
        await resolve(s, await s.get(Case, case.id), "alice")
        await s.commit()
    await step(rt, tweet("105", QUESTION, **MARIA))  # a new problem later: routed on its own
    assert (await decision_of(rt, "105")).outcome == (await decision_of(rt, "102")).outcome


@pytest.mark.timeout(300)
async def test_a_follow_up_routed_before_the_escalation_was_acted_on_still_joins_its_case(rt):
    """A backlog (or a replay) can route the follow-up before the act stage has opened the case."""
    await step(rt, tweet("201", "@AcmeHelp someone hacked my account and changed my email", **MARIA),
               tweet("202", QUESTION, thread="201", **MARIA))
    assert (await decision_of(rt, "202")).details["follow_up"] is True
    async with rt.db.session() as s:
        assert len((await s.scalars(select(Case))).all()) == 1
    assert await in_cases(rt) == {"201", "202"}


async def test_an_escalation_not_yet_acted_on_counts_as_an_open_case_for_a_day(sqlite_url):
    from datetime import timedelta

    from models import Author, RouteDecision
    from models.db import Database
    from service.stages.route import RouteStage

    db = Database(sqlite_url)
    await db.upgrade()
    try:
        async with db.session() as s:
            authors = [Author(platform="x", author_key=f"@{h}", handle=h) for h in ("new", "stale", "acted")]
            s.add_all(authors)
            await s.flush()
            for n, (author, age, acted) in enumerate(zip(authors, (0, 2, 0), (False, False, True))):
                m = Mention(platform="x", external_id=f"p{n}", author_id=author.id, text="hacked", content_hash=f"p{n}",
                            created_at=datetime.now(UTC))
                s.add(m)
                await s.flush()
                when = datetime.now(UTC) - timedelta(days=age)
                s.add(RouteDecision(mention_id=m.id, outcome="escalate_private", reason="r", router_version="t",
                                    details={"category": "fraud"}, created_at=when,
                                    acted_at=when if acted else None))
            await s.commit()
            found = await RouteStage._cases(s, {a.id for a in authors})
        assert found == {authors[0].id: (None, "fraud", None)}  # the stale one and the acted one hold nothing back
    finally:
        await db.engine.dispose()


@pytest.mark.timeout(300)
async def test_the_same_customer_on_another_platform_joins_the_case_too(rt):
    """Identities linked to one customer record: her Reddit post while her X case is open joins it."""
    from escalation.customers import link_identity
    from models import Customer

    async with rt.db.session() as s:
        ana = Customer(external_ref="C-77", name="Ana Silva", email="ana.silva@example.com", plan="premium")
        s.add(ana)
        await s.flush()
        await link_identity(s, ana.id, "x", "ana_listens")
        await link_identity(s, ana.id, "reddit", "ana_on_reddit")
        await s.commit()
    x_author = {"author_id": "4000000011", "author_handle": "ana_listens", "author_name": "Ana"}
    await step(rt, tweet("301", "@AcmeHelp someone hacked my account and changed my email", **x_author))
    question = QUESTION.removeprefix("@AcmeHelp ")
    await step(rt, reddit_post("t3_ana1", question, "ana_on_reddit"), reddit_post("t3_tom1", question, "tom_on_reddit"))
    assert (await decision_of(rt, "t3_tom1")).outcome != "escalate_private"  # the same words, another person
    follow_up = await decision_of(rt, "t3_ana1")
    assert follow_up.outcome == "escalate_private" and follow_up.details["follow_up"] is True
    async with rt.db.session() as s:
        (case,) = (await s.scalars(select(Case))).all()
    assert await in_cases(rt) == {"301", "t3_ana1"} and case.customer_id == ana.id
