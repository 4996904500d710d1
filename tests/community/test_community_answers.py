"""Accepted community answers: recorded when a moderator distinguishes a Reddit comment or a
Discourse post is marked as the solution, then offered to later askers with a link."""

from __future__ import annotations

from models import CommunityAnswer, Reply, RouteDecision


async def test_a_distinguished_answer_is_recorded_and_links_the_next_similar_question(world, connectors):
    q = await world.mention("Crossfade setting missing on desktop after the update?", platform="reddit",
                            issue="product_question", issue_p=0.8)
    await world.run(q)
    [first] = await world.get(RouteDecision, mention_id=q.id)
    assert first.outcome == "community_answer" and first.details["awaiting"] == "community"
    assert await world.get(Reply, mention_id=q.id) == []  # the community answers first

    a = await world.mention("It moved to Settings > Playback > Crossfade in 9.2, same slider as before.",
                            platform="reddit", in_reply_to=q.external_id, raw={"distinguished": "moderator"}, channel="r/acme",
                            issue="product_question", issue_p=0.8)
    await world.run(a)
    [answer_decision] = await world.get(RouteDecision, mention_id=a.id)
    assert answer_decision.outcome == "ignore"
    [kept] = await world.get(CommunityAnswer)
    assert (kept.question_mention_id, kept.answer_mention_id, kept.source) == (q.id, a.id, "distinguished")
    assert kept.url == a.url and "Crossfade" in kept.question

    later = await world.mention("where did the crossfade slider go on desktop after updating?", platform="reddit",
                                issue="product_question", issue_p=0.8)
    await world.run(later)
    [d] = await world.get(RouteDecision, mention_id=later.id)
    assert d.outcome == "community_answer" and d.details["answer"]["url"] == a.url
    [reply] = await world.get(Reply, mention_id=later.id)
    assert reply.kind == "community_answer" and a.url in reply.text and reply.status == "sent"
    assert connectors["reddit"].calls[-1].kind == "public_reply"


async def test_a_discourse_solution_counts_but_an_ordinary_reply_does_not(world):
    q = await world.mention("Can family plan members live in different cities?", platform="discourse",
                            issue="product_question")
    plain = await world.mention("no idea, following", platform="discourse", in_reply_to=q.external_id, issue="other")
    solution = await world.mention("Yes, all members just need to be in the same country.", platform="discourse",
                                   in_reply_to=q.external_id, raw={"accepted_answer": True}, issue="product_question")
    await world.run(q, plain, solution)
    [kept] = await world.get(CommunityAnswer)
    assert (kept.answer_mention_id, kept.source) == (solution.id, "accepted")


async def test_copies_of_accepted_answers_never_keep_personal_data(world):
    """Redacted when copied, and again when moderation later redacts and hides the post itself
    (triage may find personal data the copy's own detector does not: here, a name it marks)."""
    from models import Mention

    q = await world.mention("Refund still missing? mail me at sam.lee@example.com and I'll compare notes",
                            platform="reddit", issue="billing")
    name = "Jane Roe"
    text = f"Ask {name} at the Leeds store, she sorted mine in a day."
    a = await world.mention(text, platform="reddit", in_reply_to=q.external_id, raw={"distinguished": "moderator"}, channel="r/acme",
                            issue="billing", pii=[{"type": "national_id", "start": text.index(name),
                                                   "end": text.index(name) + len(name)}])
    await world.run(q)
    await world.run(a)
    [kept] = await world.get(CommunityAnswer)
    assert kept.answer_mention_id == a.id
    assert "sam.lee@example.com" not in kept.question and "Refund still missing?" in kept.question
    [post] = await world.get(Mention, id=a.id)
    assert post.hidden and name not in post.text  # moderation hid and redacted the answer ...
    assert name not in kept.answer and "Leeds store" in kept.answer  # ... and its copy followed
    assert kept.active is False  # a hidden post is no longer offered to later askers


async def test_a_question_its_author_deletes_while_its_answer_is_routed_leaves_no_words_in_the_copy(
        world, monkeypatch):
    """Routing the answer copies its question's words into the community answer; the question's
    author deletes it (Reddit: its content removed) just then: the stage removes its copy's words
    before committing, as it does for an erasure."""
    import service.stages.route as route_stage
    from listener.ingest import ingest_batch
    from listener.protocol import NormalizedMention
    from models import Mention
    from models.mentions import DELETED_TEXT

    q = await world.mention("Crossfade setting missing on desktop after the update?", platform="reddit",
                            issue="product_question")
    a = await world.mention("It moved to Settings > Playback > Crossfade in 9.2.", platform="reddit",
                            in_reply_to=q.external_id, raw={"distinguished": "moderator"}, channel="r/acme",
                            issue="product_question")
    real = route_stage.harvest

    async def harvest_then_the_author_deletes(session, mentions, own):
        out = await real(session, mentions, own)
        async with world.db.session() as s:  # ingest, in its own transaction, commits meanwhile
            gone = NormalizedMention(platform="reddit", external_id=q.external_id, text="[deleted]",
                                     created_at=q.created_at, event="delete", remove_content=True)
            assert [r.outcome for r in await ingest_batch(s, [gone])] == ["deleted"]
            await s.commit()
        return out

    monkeypatch.setattr(route_stage, "harvest", harvest_then_the_author_deletes)
    await world.run(a)
    [copy] = await world.get(CommunityAnswer)
    [question] = await world.get(Mention, id=q.id)
    assert question.text == DELETED_TEXT and "Crossfade setting missing" not in copy.question
