"""Who a code proves the customer to be: on a pending case, the record they verified as is shown to the
agent and linked to the account only when the agent says so (once: of two agents at once, the first);
a known customer's verification binds the link to the account's id, not to a handle someone else can take."""

from __future__ import annotations

from datetime import timedelta

import pytest
from escalation_support import MARIA_MAIL, TOM_MAIL, ask_code, csrf_of, enter_code, new_client, start
from sqlalchemy import func, select

from escalation.verification import confirm_identity
from models import AuditEvent, Author, Case, Customer, CustomerSession, SecureLink, SocialIdentity
from models.base import utcnow


async def _agent(world):
    agent = await new_client(world)
    r = await agent.post("/login", data={"username": "alice", "password": "correct horse battery"},
                         allow_redirects=False)
    assert r.status == 302
    return agent


async def test_a_link_holder_verifying_with_another_records_email_links_nothing_until_an_agent_does(world, smtp_sink):
    case_id, path = await world.case("vic_77", user_id="4242")
    await start(world.client, path)
    await ask_code(world.client, TOM_MAIL)  # a record the link holder controls, not the account's owner's
    assert (await enter_code(world.client, await smtp_sink.code_for(TOM_MAIL))).status == 303
    async with world.rt.db.session() as s:
        case = await s.get(Case, case_id)
        author = await s.get(Author, case.author_id)
        assert case.customer_id is None and case.identity_pending and author.customer_id is None
        assert list(await s.scalars(select(SocialIdentity).where(SocialIdentity.customer_id == world.tom))) == []
    agent = await _agent(world)
    try:
        html = await (await agent.get(f"/cases/{case_id}")).text()
        assert 'id="verified-as"' in html and "Tom Reid" in html and "not linked" in html
        csrf = csrf_of(html)
        # only a record the customer verified as on this case can be linked
        refused = await agent.post(f"/cases/{case_id}/identity", allow_redirects=False,
                                   data={"csrf_token": csrf, "customer_id": str(world.maria)})
        assert refused.status == 400
        async with world.rt.db.session() as s:
            assert (await s.get(Case, case_id)).customer_id is None
        assert 'value="%d"' % world.tom in html and 'id="link-customer"' in html
        done = await agent.post(f"/cases/{case_id}/identity", allow_redirects=False,
                                data={"csrf_token": csrf, "customer_id": str(world.tom)})
        assert done.status == 303
        assert 'id="link-customer"' not in await (await agent.get(f"/cases/{case_id}")).text()  # linked now
        again = await agent.post(f"/cases/{case_id}/identity", allow_redirects=False,
                                 data={"csrf_token": csrf, "customer_id": str(world.tom)})
        assert again.status == 400  # linked already: nothing to confirm
    finally:
        await agent.close()
    async with world.rt.db.session() as s:
        case = await s.get(Case, case_id)
        assert (case.status, case.customer_id, case.identity_pending) == ("verified", world.tom, False)
        identity = await s.scalar(select(SocialIdentity).where(SocialIdentity.customer_id == world.tom))
        assert (identity.handle_key, identity.handle, identity.source) == ("id:4242", "vic_77", "verification")
        assert identity.verified_at is not None and (await s.get(Author, case.author_id)).customer_id == world.tom
        events = {(e.actor, e.action, e.object_id) for e in await s.scalars(select(AuditEvent))}
    assert ("session:alice", "customer.viewed", str(world.tom)) in events  # the record shown was audited
    assert ("session:alice", "case.identity_confirmed", str(case_id)) in events


async def test_a_known_customer_verifying_binds_the_link_to_the_account_not_its_handle(world, smtp_sink):
    """Maria's record names her handle (a CRM import); her account verifies: the link is now keyed by
    the account's id, so whoever takes the handle after her is not her."""
    case_id, path = await world.case("maria_music3", user_id="555")
    await start(world.client, path)
    await ask_code(world.client)
    assert (await enter_code(world.client, await smtp_sink.code_for(MARIA_MAIL))).status == 303
    async with world.rt.db.session() as s:
        case = await s.get(Case, case_id)
        assert case.customer_id == world.maria and not case.identity_pending
        rows = [(i.handle_key, i.platform_user_id, i.customer_id)
                for i in await s.scalars(select(SocialIdentity).where(SocialIdentity.platform == "x"))]
    assert rows == [("id:555", "555", world.maria)]


async def _pending_verified_as_two(db) -> tuple[int, int, int]:
    """A pending case whose two sessions verified as two records: (case id, one, the other)."""
    now, later = utcnow(), utcnow() + timedelta(hours=1)
    async with db.session() as s:
        one, other = Customer(external_ref="C-1", name="Tom Reid"), Customer(external_ref="C-2", name="Ann")
        author = Author(platform="x", author_key="4242", handle="vic_77", platform_user_id="4242")
        s.add_all([one, other, author])
        await s.flush()
        case = Case(author_id=author.id, category="security")
        s.add(case)
        await s.flush()
        for n, customer in enumerate((one, other)):
            link = SecureLink(case_id=case.id, token_hash=f"{n:064d}", expires_at=later, used_at=now)
            s.add(link)
            await s.flush()
            s.add(CustomerSession(case_id=case.id, link_id=link.id, session_hash=f"{n + 1:064d}",
                                  expires_at=later, customer_id=customer.id, verified_at=now))
        await s.commit()
        return case.id, one.id, other.id


@pytest.mark.parametrize("second", ["the same record", "the other record"])
async def test_of_two_agents_confirming_a_pending_case_at_once_only_the_first_links_it(any_db, second):
    case_id, one, other = await _pending_verified_as_two(any_db)
    async with any_db.session() as a, any_db.session() as b:
        case_a, case_b = await a.get(Case, case_id), await b.get(Case, case_id)  # both read it pending
        assert await confirm_identity(a, case_a, one, "session:alice")
        await a.commit()
        chosen = one if second == "the same record" else other
        assert not await confirm_identity(b, case_b, chosen, "session:bob")
        await b.commit()
    async with any_db.session() as s:
        case = await s.get(Case, case_id)
        assert (case.customer_id, case.identity_pending) == (one, False)
        assert (await s.get(Author, case.author_id)).customer_id == one
        assert [i.customer_id for i in await s.scalars(select(SocialIdentity))] == [one]
        assert await s.scalar(select(func.count()).select_from(AuditEvent)
                              .where(AuditEvent.action == "case.identity_confirmed")) == 1


async def test_only_the_assigned_agent_resolves_a_case_or_links_its_account(world, smtp_sink):
    """Alice took the case: Bob, another agent, can neither resolve it nor link its account (403),
    and nothing changes."""
    case_id, path = await world.case("vic_88", user_id="4343")
    await start(world.client, path)
    await ask_code(world.client, TOM_MAIL)
    assert (await enter_code(world.client, await smtp_sink.code_for(TOM_MAIL))).status == 303
    alice, bob = await _agent(world), await new_client(world)
    try:
        assert (await bob.post("/login", data={"username": "bob", "password": "correct horse battery"},
                               allow_redirects=False)).status == 302
        page = await (await alice.get(f"/cases/{case_id}")).text()
        taken = await alice.post(f"/cases/{case_id}/take", data={"csrf_token": csrf_of(page)}, allow_redirects=False)
        assert taken.status == 303
        csrf = csrf_of(await (await bob.get(f"/cases/{case_id}")).text())
        for action, form in (("resolve", {}), ("identity", {"customer_id": str(world.tom)})):
            r = await bob.post(f"/cases/{case_id}/{action}", data={"csrf_token": csrf, **form}, allow_redirects=False)
            assert r.status == 403, action
    finally:
        await alice.close()
        await bob.close()
    async with world.rt.db.session() as s:
        case = await s.get(Case, case_id)
        assert (case.status, case.customer_id) == ("verified", None)
