"""A handle an erased account showed (service.privacy_subject, service.erasure), on SQLite and
PostgreSQL: once account 111 (@maria) is erased, the handle's new owner 222 is the only account
still showing it, but a customer whose CRM identity is keyed by that handle alone may mean the
erased account: exporting or erasing the customer is refused as ambiguous rather than taking 222
for theirs. The erasure's audit entry keeps keyed hashes of the handles, never the handles."""

from __future__ import annotations

from datetime import timedelta

import pytest
from privacy_support import SECRET_KEY, T0, dump, found_in
from sqlalchemy import select

from escalation.customers import link_identity
from models import AuditEvent, Customer, Mention, SocialIdentity
from service import erasure, privacy_export
from service.erasure import AmbiguousSubject, Subject


async def crm_customer(w, handle: str = "@maria") -> int:
    """A CRM import: a customer linked to a handle, no user id."""
    async with w.db.session() as s:
        crm = Customer(name="Someone Imported", email="someone@example.com")
        s.add(crm)
        await s.flush()
        await link_identity(s, crm.id, "x", handle)
        await s.commit()
        return crm.id


async def refused(w, cid: int) -> None:
    before = await dump(w.db)
    for request in (privacy_export.export(w.db, Subject(customer_id=cid), actor="dpo", reason="art 15",
                                          secret=SECRET_KEY),
                    erasure.erase(w.db, Subject(customer_id=cid), actor="dpo", reason="art 17", secret=SECRET_KEY),
                    erasure.erase(w.db, Subject(customer_id=cid), actor="dpo", reason="art 17", secret=SECRET_KEY,
                                  dry_run=True)):
        with pytest.raises(AmbiguousSubject) as exc:
            await request
        assert exc.value.user_ids == ["222"] and exc.value.erased
        assert "--user-id" in str(exc.value) and "erased before" in str(exc.value)
    assert await dump(w.db) == before  # nothing exported, erased or recorded


async def test_a_handle_of_an_account_erased_by_user_id_while_another_showed_it_makes_the_customer_ambiguous(world):
    w = world
    await w.ingest(w.post("zqxfirst my order 55 is late", author="maria", name="Maria Lopez", user_id="111",
                          at=T0 - timedelta(days=300)))
    await w.ingest(w.post("strangerword I live at 9 Elm Road", author="maria", name="Mark Stranger", user_id="222"))
    cid = await crm_customer(w)
    await erasure.erase(w.db, Subject(platform="x", user_id="111"), actor="dpo", reason="art 17", secret=SECRET_KEY)
    await refused(w, cid)
    async with w.db.session() as s:
        event = await s.scalar(select(AuditEvent).where(AuditEvent.action == "privacy.erased"))
        assert len(event.details["shown_keys"]) == 1  # her handle, hashed
    assert found_in({"audit_events": (await dump(w.db))["audit_events"]}, "maria") == []
    async with w.db.session() as s:  # the stranger's post and the CRM record are as they were
        assert await s.scalar(select(Mention.id).where(Mention.text.like("strangerword%"))) is not None
        assert (await s.get(Customer, cid)).name == "Someone Imported"


async def test_a_handle_erased_with_its_account_then_taken_by_another_makes_the_customer_ambiguous(world):
    """Erased when nobody else showed it (in the audit entry's subject keys), taken later; the CRM's
    link by that handle alone, from an older release (no account bound to it), is still pending."""
    w = world
    await w.ingest(w.post("zqxfirst my order 55 is late", author="maria", name="Maria Lopez", user_id="111",
                          at=T0 - timedelta(days=300)))
    await erasure.erase(w.db, Subject(platform="x", user_id="111"), actor="dpo", reason="art 17", secret=SECRET_KEY)
    await w.ingest(w.post("strangerword hello", author="maria", name="Mark Stranger", user_id="222"))
    async with w.db.session() as s:
        crm = Customer(name="Someone Imported", email="someone@example.com")
        s.add(crm)
        await s.flush()
        s.add(SocialIdentity(customer_id=crm.id, platform="x", handle="maria", handle_key="maria", source="import"))
        await s.commit()
        cid = crm.id
    await refused(w, cid)


async def test_a_handle_whose_only_erased_account_is_its_owner_now_still_names_that_owner(world):
    """222 erased, then back with the same handle: the customer's handle names 222 alone."""
    w = world
    await w.ingest(w.post("zqxold my order 55 is late", author="maria", user_id="222", at=T0 - timedelta(days=300)))
    await erasure.erase(w.db, Subject(platform="x", user_id="222"), actor="dpo", reason="art 17", secret=SECRET_KEY)
    await w.ingest(w.post("newword hello again", author="maria", user_id="222"))
    cid = await crm_customer(w)
    doc = await privacy_export.export(w.db, Subject(customer_id=cid), actor="dpo", reason="art 15", secret=SECRET_KEY)
    assert [p["text"] for p in doc["posts"]] == ["newword hello again"]
    counts = await erasure.erase(w.db, Subject(customer_id=cid), actor="dpo", reason="art 17", secret=SECRET_KEY)
    assert counts["posts"] == 1 and counts["customers"] == 1
