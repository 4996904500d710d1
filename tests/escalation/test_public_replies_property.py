"""Property: whatever the customer wrote, no public reply of the escalation flow — the act stage's
notice, the agent's one-click escalation, the closing note — carries a card number, an e-mail
address, a phone number or any of the case's private text."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select

from escalation.cases import resolve
from escalation.handoff import closing_note, escalate_mention
from models import Author, Mention, Reply, RouteDecision, TriageResult
from service.bus import Envelope
from service.seed import seed_demo
from service.stages.act import ActStage
from service.stages.base import StageContext
from triage.pii import detect_pii

_ids = itertools.count(1)


def luhn_complete(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return digits + str((10 - total % 10) % 10)


cards = st.builds(lambda p, rest: luhn_complete(p + rest), st.sampled_from(["4", "51", "37", "6011"]),
                  st.text("0123456789", min_size=11, max_size=11)).map(
    lambda n: " ".join(n[i:i + 4] for i in range(0, len(n), 4)))
emails = st.builds(lambda u, d: f"{u}@{d}.com", st.from_regex(r"[a-z][a-z0-9.]{2,12}", fullmatch=True),
                   st.from_regex(r"[a-z]{3,10}", fullmatch=True))
phones = st.builds(lambda a, b: f"+1 555 {a:03d} {b:04d}", st.integers(0, 999), st.integers(0, 9999))
private = st.from_regex(r"Zq[a-z]{4,9} [a-z]{5,9} [a-z]{5,9} [0-9]{2,4}", fullmatch=True)
names = st.one_of(st.text(min_size=1, max_size=30), emails, phones)


async def _scenario(world, text: str, display_name: str) -> list[str]:
    n = next(_ids)
    rt = world.rt
    async with rt.db.session() as s:
        authors = []
        for k in range(2):
            a = Author(platform="x", author_key=f"prop-{n}-{k}", platform_user_id=f"9{n}{k}", handle=f"prop_{n}_{k}",
                       display_name=display_name)
            s.add(a)
            authors.append(a)
        await s.flush()
        mentions = []
        for k, a in enumerate(authors):
            m = Mention(platform="x", external_id=f"{n}{k}", author_id=a.id, text=text, is_public=True,
                        created_at=datetime.now(UTC), content_hash=f"prop{n}{k}")
            s.add(m)
            mentions.append(m)
        await s.flush()
        for m in mentions:
            s.add(TriageResult(mention_id=m.id, model_version="t", sentiment="negative", sensitivity="fraud",
                               escalate=True, issue_type="fraud", toxicity="not_offensive", spam="ham",
                               pii_exposed=True, priority=90, scores={}))
        # the pipeline's way for the first mention, the agent's one click for the second
        s.add(RouteDecision(mention_id=mentions[0].id, outcome="escalate_private", router_version="t",
                            reason="sensitivity is fraud: handled in a private channel", details={"hide_first": True}))
        await s.commit()
        ids = [m.id for m in mentions]
    stage = ActStage(StageContext(settings=rt.settings, db=rt.db))
    await stage.handle([Envelope(id=str(n), topic="act", key=f"act:{ids[0]}", payload={"mention_id": ids[0]})])
    async with rt.db.session() as s:
        second = await s.get(Mention, ids[1])
        case_b, _ = await escalate_mention(s, second, rt.settings, "session:alice")
        await resolve(s, case_b, "session:alice")
        await closing_note(s, case_b, "session:alice")
        replies = list(await s.scalars(select(Reply).where(Reply.mention_id.in_(ids))))
        await s.commit()
    assert {r.visibility for r in replies} == {"public", "private"}
    return [r.text for r in replies if r.visibility == "public"]


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(card=cards, email=emails, phone=phones, secret=private, name=names, order=st.permutations(range(4)))
async def test_no_public_reply_carries_personal_data_or_the_private_text(world, card, email, phone, secret, name,
                                                                         order):
    if not getattr(world, "seeded", False):
        await seed_demo(world.rt.db)  # the real templates: the notice as a brand would write it
        world.seeded = True
    parts = [f"my card {card} was charged", f"mail me at {email}", f"call {phone}", secret]
    text = "@AcmeHelp " + ", ".join(parts[i] for i in order)
    public = await _scenario(world, text, name)
    assert len(public) == 3  # the pipeline's notice, the one-click notice, the closing note
    for reply in public:
        assert detect_pii(reply) == [], reply
        for bit in (card, card.replace(" ", ""), email, phone, secret):
            assert bit not in reply
