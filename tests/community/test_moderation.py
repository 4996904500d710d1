"""Moderation in the pipeline and in the queue: rules hold or remove posts, personal data in public
is hidden at once, redacted and its author told privately, and a moderator's decisions reach the
platform through the connector."""

from __future__ import annotations

import pytest

from community import decisions, moderation
from models import AuditEvent, Author, Case, Mention, ModerationAction, Reply, RouteDecision

CARD = "4111 1111 1111 1111"


async def only(world, model, **where):
    [row] = await world.get(model, **where)
    return row


async def test_a_card_number_in_public_is_hidden_redacted_and_its_author_told_privately(world, connectors):
    text = f"@AcmeHelp why does my card {CARD} keep failing at checkout"
    start = text.index(CARD)
    m = await world.mention(text, platform="reddit", issue="billing",
                            pii=[{"type": "card_number", "start": start, "end": start + len(CARD)}])
    await world.run(m)
    await world.run(m)  # redelivered: nothing twice
    mention = await only(world, Mention, id=m.id)
    assert mention.hidden and CARD not in mention.text and "checkout" in mention.text
    action = await only(world, ModerationAction, mention_id=m.id)
    assert (action.action, action.rule, action.status) == ("hide", "personal-data-in-public", "done")
    assert connectors["reddit"].kinds() == ["remove", "private_message"]
    notice = await only(world, Reply, mention_id=m.id)
    assert notice.visibility == "private" and notice.template == "pii_removed_notice" and CARD not in notice.text
    events = await world.get(AuditEvent, action="moderation.hide")
    assert events and events[0].details["rule"] == "personal-data-in-public"


async def test_a_spam_rule_holds_the_post_for_review_hidden_on_the_platform_at_once(world, connectors):
    """A held post was left public until reviewed; like AutoModerator's "filter" it is now hidden
    while it waits (Reddit removes it; approving restores it)."""
    m = await world.mention("cheap followers fast, visit my profile", platform="reddit", issue="other", spam=0.97)
    await world.run(m)
    await world.run(m)  # redelivered: hidden once
    decision = await only(world, RouteDecision, mention_id=m.id)
    assert decision.outcome == "moderate" and decision.details["rule"] == "likely-spam"
    hold = await only(world, ModerationAction, mention_id=m.id, action="hold")
    assert (hold.action, hold.status) == ("hold", "pending")
    hidden = await only(world, ModerationAction, mention_id=m.id, action="filter")
    assert (hidden.status, hidden.rule, hidden.dedup_key) == ("done", "likely-spam", f"{hold.dedup_key}:filter")
    assert connectors["reddit"].kinds() == ["remove"] and connectors["reddit"].calls[0].target_external_id == m.external_id
    assert (await only(world, Mention, id=m.id)).hidden
    async with world.db.session() as s:
        assert [h.id for h, *_ in await moderation.queue(s)] == [hold.id]  # still waits for a moderator


@pytest.mark.parametrize("platform, in_reply_to, kinds, status", [
    ("discourse", None, ["hide"], "done"),
    ("x", "brand-tweet-1", ["hide"], "done"),  # X hides replies
    ("x", None, [], "recorded"),  # ... and nothing else: the post stays up while it waits
])
async def test_a_hold_hides_where_the_platform_can(world, connectors, platform, in_reply_to, kinds, status):
    m = await world.mention("@AcmeHelp you are all idiots", platform=platform, issue="other", toxicity=0.95,
                            in_reply_to=in_reply_to)
    await world.run(m)
    assert (await only(world, ModerationAction, mention_id=m.id, action="hold")).rule == "abusive-language"
    hidden = await only(world, ModerationAction, mention_id=m.id, action="filter")
    assert hidden.status == status and [k for k in connectors[platform].kinds() if k != "private_message"] == kinds
    assert (await only(world, Mention, id=m.id)).hidden is bool(kinds)
    if not kinds:
        assert "cannot hide" in hidden.details["error"]


async def test_in_dry_run_the_hide_of_a_hold_is_recorded_not_performed(make_world, connectors):
    world = make_world(dry_run=True)
    m = await world.mention("cheap followers fast", platform="reddit", issue="other", spam=0.97)
    await world.run(m)
    hidden = await only(world, ModerationAction, mention_id=m.id, action="filter")
    assert hidden.status == "dry_run" and connectors["reddit"].calls == []
    assert (await only(world, Mention, id=m.id)).hidden


async def test_a_reported_post_stays_up_and_approving_it_touches_nothing_on_the_platform(world, connectors):
    m = await world.mention("the real support is on telegram", platform="discourse", issue="other")
    async with world.db.session() as s:
        hold, _ = await moderation.report(s, await s.get(Mention, m.id), "session:alice", "impersonation?")
        await s.commit()
    assert not (await only(world, Mention, id=m.id)).hidden
    assert [a.action for a in await world.get(ModerationAction, mention_id=m.id)] == ["hold"]
    await review(world, hold, "approve")
    assert connectors["discourse"].calls == []  # never hidden: no "unhide" for a visible post
    assert (await only(world, ModerationAction, mention_id=m.id, action="approve")).status == "recorded"


async def test_a_held_then_approved_post_does_not_count_as_a_removal_of_its_author(world, connectors):
    m, hold = await held(world, connectors)
    await review(world, hold, "approve")
    async with world.db.session() as s:
        author_id = (await s.get(Mention, m.id)).author_id
        assert await moderation.author_removals(s, {author_id}) == {}


async def test_a_remove_rule_removes_on_reddit_and_hides_on_discourse(world, connectors):
    r = await world.mention("FREE giveaway, send eth to win", platform="reddit", issue="other")
    d = await world.mention("giveaway! dm me for free premium", platform="discourse", issue="other")
    await world.run(r, d)
    assert connectors["reddit"].kinds() == ["remove"] and connectors["reddit"].calls[0].target_external_id == r.external_id
    assert connectors["discourse"].kinds() == ["hide"]
    for m in (r, d):
        action = await only(world, ModerationAction, mention_id=m.id)
        assert (action.rule, action.status) == ("crypto-giveaway-spam", "done")


async def test_a_refused_platform_action_is_recorded_as_failed(world, connectors):
    connectors["reddit"].fail = True
    m = await world.mention("giveaway time, t.me/win", platform="reddit", issue="other")
    await world.run(m)
    action = await only(world, ModerationAction, mention_id=m.id)
    assert action.status == "failed" and "403" in action.details["error"]


async def held(world, connectors, platform="reddit"):
    m = await world.mention("buy cheap followers now", platform=platform, issue="other", spam=0.97, author="spammer")
    await world.run(m)
    return m, await only(world, ModerationAction, mention_id=m.id, action="hold")


async def review(world, hold, decision, reason=None):
    async with world.db.session() as s:
        row = await s.get(ModerationAction, hold.id)
        out = await decisions.review(s, row, decision, "mod", reason=reason, settings=world.settings)
        await s.commit()
    await moderation.execute(world.db, world.connectors, out["actions"], dry_run=False)
    from service.dispatch import Dispatcher
    await Dispatcher(world.db, world.connectors, False).deliver(out["replies"])
    return out


async def test_approving_a_held_post_shows_it_again_on_the_platform(world, connectors):
    m, hold = await held(world, connectors)
    await review(world, hold, "approve")
    assert connectors["reddit"].kinds() == ["remove", "approve"]  # hidden while held, restored
    assert (await only(world, ModerationAction, id=hold.id)).status == "reviewed"
    assert not (await only(world, Mention, id=m.id)).hidden
    with pytest.raises(ValueError, match="already reviewed"):
        await review(world, hold, "remove", "twice")


async def test_removing_needs_a_reason_which_is_sent_to_the_author(world, connectors):
    m, hold = await held(world, connectors)
    with pytest.raises(ValueError, match="reason"):
        await review(world, hold, "remove", "  ")
    await review(world, hold, "remove", "Selling followers is not allowed here.")
    assert connectors["reddit"].kinds() == ["remove", "private_message"]  # removed once, when it was held
    assert "Selling followers is not allowed here." in connectors["reddit"].calls[1].text
    assert (await only(world, Mention, id=m.id)).hidden
    removal = await only(world, ModerationAction, mention_id=m.id, action="remove")
    assert removal.status == "recorded" and removal.actor == "mod"


async def test_removing_a_held_post_the_platform_refused_to_hide_removes_it_then(world, connectors):
    connectors["discourse"].fail = True
    m, hold = await held(world, connectors, platform="discourse")
    assert (await only(world, ModerationAction, mention_id=m.id, action="filter")).status == "failed"
    connectors["discourse"].fail = False
    await review(world, hold, "remove", "No selling.")
    assert connectors["discourse"].kinds() == ["hide", "hide", "private_message"]
    assert (await only(world, ModerationAction, mention_id=m.id, action="remove")).status == "done"


async def test_a_reason_typed_with_personal_data_is_kept_and_sent_redacted(world, connectors):
    """Reasons are free text shown to admins (the audit log) and sent to the author: a card number or
    an address a moderator pastes into one is stored and sent as a placeholder."""
    m, hold = await held(world, connectors)
    await review(world, hold, "remove", "card 4111 1111 1111 1111 and jane.doe@example.com posted here")
    rows = [a.reason for a in await world.get(ModerationAction, mention_id=m.id)]
    rows += [e.reason for e in await world.get(AuditEvent) if e.reason]
    rows.append(connectors["reddit"].calls[1].text)
    assert any("[card_number] and [email] posted here" in r for r in rows)
    assert not any("4111" in r or "jane.doe" in r for r in rows), rows


async def test_a_moderator_cannot_approve_a_post_held_for_exposing_personal_data(world, connectors):
    m = await world.mention("buy cheap followers, pay to jane.doe@example.com", platform="reddit", issue="other",
                            spam=0.97, author="spammer", pii=[{"type": "email", "start": 32, "end": 52}])
    await world.run(m)
    async with world.db.session() as s:  # an agent reports it to the moderators: a hold in their queue
        hold, _ = await moderation.report(s, await s.get(Mention, m.id), "session:alice", "please look")
        await s.commit()
    with pytest.raises(ValueError, match="personal data"):
        await review(world, hold, "approve")
    assert (await only(world, Mention, id=m.id)).hidden


async def test_banning_removes_the_post_bans_the_author_and_routes_their_next_post_to_moderation(world, connectors):
    m, hold = await held(world, connectors, platform="discourse")
    await review(world, hold, "ban", "Repeated spam.")
    assert connectors["discourse"].kinds() == ["hide", "ban", "private_message"]  # hidden when held
    assert (await only(world, Author, handle="spammer")).banned
    later = await world.mention("@AcmeHelp how do I reset my password", platform="discourse", author="spammer")
    await world.run(later)
    assert (await only(world, RouteDecision, mention_id=later.id)).outcome == "moderate"


async def test_escalating_opens_a_private_case(world, connectors):
    m, hold = await held(world, connectors)
    await review(world, hold, "escalate")
    case = await only(world, Case, opened_by_mention_id=m.id)
    assert case.status == "open"
    [event] = await world.get(AuditEvent, action="moderation.review.escalate")
    assert event.actor == "mod"


async def test_the_queue_lists_pending_holds_oldest_first(world, connectors):
    first, _ = await held(world, connectors)
    second = await world.mention("followers for sale", platform="reddit", issue="other", spam=0.99)
    await world.run(second)
    async with world.db.session() as s:
        rows = await moderation.queue(s)
    assert [m.id for _, m, _, _ in rows] == [first.id, second.id]


async def test_an_approve_rule_vouches_for_spam_scores_but_never_for_exposed_personal_data(make_world, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("- name: trusted-faq\n  keywords: [faq]\n  action: approve\n")
    world = make_world(moderation_rules_path=rules)
    ok = await world.mention("faq: see the pinned post", platform="reddit", issue="product_question", spam=0.9)
    leak = await world.mention("faq: mail me at a@b.example", platform="reddit", issue="product_question",
                               pii=[{"type": "email", "start": 13, "end": 26}])
    await world.run(ok, leak)
    assert (await only(world, RouteDecision, mention_id=ok.id)).outcome != "moderate"
    assert (await only(world, RouteDecision, mention_id=leak.id)).outcome == "moderate"


async def test_with_the_batchs_recorded_keys_an_action_is_added_once_without_a_lookup(world):
    m = await world.mention("just a post", platform="reddit", issue="other")
    async with world.db.session() as s:
        mention = await s.get(Mention, m.id)
        recorded = await moderation.recorded_keys(s, [m.id])
        first = await moderation.add_action(s, f"mod:{m.id}", mention, "hold", "why", rule="r", recorded=recorded)
        again = await moderation.add_action(s, f"mod:{m.id}", mention, "hold", "why", rule="r", recorded=recorded)
        await s.commit()
    async with world.db.session() as s:
        later = await moderation.add_action(s, f"mod:{m.id}", await s.get(Mention, m.id), "hold", "why", rule="r",
                                            recorded=await moderation.recorded_keys(s, [m.id]))
    assert first is not None and again is None and later is None
    assert recorded == {f"mod:{m.id}", f"mod:{m.id}:filter"}  # the hold and the hide that goes with it
    assert len(await world.get(ModerationAction, mention_id=m.id)) == 2


def test_a_post_already_redacted_is_shown_whole_not_cut_by_the_original_spans():
    """Triage's spans are positions in the original text; once the stored text was redacted (the
    post was hidden for exposing personal data) they would cut into the words after each
    placeholder ("[email] about my order" shown as "[email]er")."""
    from models import TriageResult

    original = "email me at jane.doe@example.com about my order please"
    at = original.index("jane")
    tri = TriageResult(scores={"pii": [{"type": "email", "start": at, "end": at + len("jane.doe@example.com")}]})
    assert moderation.shown_text(Mention(text=original), tri) == "email me at [email] about my order please"
    stored = moderation.redact(original)
    assert stored == "email me at [email] about my order please"
    assert moderation.shown_text(Mention(text=stored), tri) == stored
    # personal data added to a redacted text (an edit) is still found afresh
    edited = stored + ", or call 0161 496 0000"
    assert "0161" not in moderation.shown_text(Mention(text=edited), tri)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_two_executors_at_once_perform_an_action_once(request, backend, tmp_path):
    """An executor claims the row (``queued`` to ``sending``, one conditional statement) before it
    looks any further: a second executor, in another process, that reads the row meanwhile finds it
    taken, and the platform is asked once. Either may win; the row ends ``done`` once."""
    import asyncio
    import threading

    from listener.protocol import NormalizedMention
    from models.db import Database
    from tests.community.conftest import T0, RecordingConnector

    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    db = Database(url)
    await db.upgrade()
    reddit = RecordingConnector("reddit")
    try:
        async with db.session() as s:
            from listener.ingest import ingest_batch

            [res] = await ingest_batch(s, [NormalizedMention(platform="reddit", external_id="t3_x", text="spam",
                                                             created_at=T0, author_handle="spammer")])
            row = await moderation.add_action(s, "t:hide", await s.get(Mention, res.mention_id), "hide", "spam",
                                              rule="t")
            await s.commit()
            action_id = row.id

        class SecondExecutor(frozenset):  # consulted by the first executor once it has the row in hand
            def __contains__(self, platform: object) -> bool:
                if not getattr(self, "done", False):
                    self.done = True
                    thread = threading.Thread(target=asyncio.run, args=(self.run(),))
                    thread.start()
                    thread.join()
                return False

            async def run(self) -> None:
                other = Database(url)
                try:
                    await moderation.execute(other, {"reddit": reddit}, [action_id], dry_run=False)
                finally:
                    await other.close()

        await moderation.execute(db, {"reddit": reddit}, [action_id], dry_run=False, dry_run_channels=SecondExecutor())
        assert reddit.kinds() == ["remove"]
        async with db.session() as s:
            assert (await s.get(ModerationAction, action_id)).status == "done"
    finally:
        await db.close()
