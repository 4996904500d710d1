"""Ingest: store normalized mentions once, thread them, link authors to customer records.

Idempotent: a mention already stored (same platform and external id) is reported as a duplicate
and changes nothing, unless it is an edit (newer ``edited_at``), a deletion or a restore of a
deleted post (never of an erased one: :func:`_guarded`). A deletion whose platform's terms require it
(``remove_content``) also removes the post's content (:mod:`listener.deletions`); only a restore
brings words back to such a post, never an edit or a redelivered copy. A whole thread deleted or
recovered on its platform (a Discourse topic) is applied by :mod:`listener.threads`; while a thread
is deleted, a new post of it is stored deleted with it and a post recovered on its own stays
deleted with it. A deletion that arrives before its post is kept for it (:mod:`listener.unseen`).
What can be stored is checked by the intakes before publishing (:mod:`listener.validation`).

Rows are read as plain columns and written with one statement per table (:mod:`models.bulk`):
the ORM's per-object bookkeeping was most of this stage's time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from escalation.customers import claim_handle_link
from listener import unseen
from listener.deletions import content_removed, lock_rows, remove_copies, removed, without_content
from listener.protocol import THREAD_EVENTS, NormalizedMention, utc
from listener.text import clean_text, content_key
from models import Author, Conversation, Mention, ModerationAction, SocialIdentity
from models.base import utcnow
from models.bulk import IDS, Record, insert_rows, pair_params, pairs_in, update_rows
from models.mentions import DELETED_TEXT, ERASED_TEXT

Outcome = Literal["new", "edited", "deleted", "restored", "duplicate", "thread"]  # thread: listener.threads
KEY = {"mentions": ("platform", "external_id"), "authors": ("platform", "author_key"),  # unique: ids read back
       "conversations": ("thread_key",)}
AUTHOR_FIELDS = ("platform_user_id", "handle", "display_name", "followers", "account_created_at")
_M, _A, _C, _S = (m.__table__.c for m in (Mention, Author, Conversation, SocialIdentity))
# the batch's statements, built once; (platform, key) pairs looked up with models.bulk.pairs_in
STORED = select(_M.id, _M.platform, _M.external_id, _M.text, _M.url, _M.edited_at, _M.deleted,
                _M.deleted_with_thread).where(
    pairs_in(_M.platform, _M.external_id))
AUTHORS = select(_A.id, _A.platform, _A.author_key, _A.customer_id, *(_A[f] for f in AUTHOR_FIELDS)).where(
    pairs_in(_A.platform, _A.author_key))
LINKS = select(_S.platform, _S.handle_key, _S.customer_id).where(pairs_in(_S.platform, _S.handle_key))
PARENTS = select(_M.platform, _M.external_id, _M.conversation_id).where(pairs_in(_M.platform, _M.external_id))
THREAD = (_C.id, _C.thread_key, _C.customer_id, _C.last_activity_at, _C.platform_deleted_at)
THREADS = select(*THREAD).where(_C.thread_key.in_(bindparam("keys", expanding=True)))
THREADS_BY_ID = select(*THREAD).where(_C.id.in_(IDS))
_MA = ModerationAction.__table__.c
HIDING = ("hide", "remove", "filter")  # community.moderation's actions that set ``hidden`` (a hold's filter)
MODERATED = select(_MA.mention_id).where(_MA.mention_id.in_(IDS), _MA.action.in_(HIDING)).distinct()
@dataclass
class Ingested:
    mention_id: int | None
    outcome: Outcome
    revealed: tuple[int, ...] = ()  # posts a thread's recovery showed again (listener.threads), to triage


def author_key(m: NormalizedMention) -> str | None:
    if m.author_id:
        return m.author_id
    return f"@{m.author_handle.lower()}" if m.author_handle else None


def handle_key(handle: str | None, user_id: str | None) -> list[str]:
    """The identity keys an author may be linked by, the first found winning: the account's user id
    before its handle, which another account can take once it is given up (a link made with the id
    is keyed by it alone: escalation.customers.link_identity; a link by handle alone is the first
    account's seen with it: escalation.customers.claim_handle_link)."""
    keys = [f"id:{user_id}"] if user_id else []
    return keys + ([handle.lstrip("@").lower()] if handle else [])


async def ingest_batch(session: AsyncSession, batch: list[NormalizedMention]) -> list[Ingested]:
    """Persist a batch in the caller's transaction; returns one result per input, in order."""
    if any(m.event in THREAD_EVENTS or m.event == "restore" for m in batch):
        from listener import threads  # builds on this module

        return await threads.ingest_batch(session, batch, _posts)
    return await _posts(session, batch)


async def _posts(session: AsyncSession, batch: list[NormalizedMention]) -> list[Ingested]:
    """:func:`ingest_batch` of post events (no thread's)."""
    pairs = {(m.platform, m.external_id) for m in batch}
    existing = {key: Record.of(r) for r in await session.execute(STORED, pair_params(pairs))
                if (key := (r.platform, r.external_id)) in pairs}
    # a redelivered copy of an erased post (service.privacy) brings back neither its text nor its author
    authors = await _authors(session, [m for m in batch if not _erased(existing.get((m.platform, m.external_id)))])
    conversations = await _conversations(session, batch)
    new: list[tuple[Record, Record]] = []  # (mention, its thread)
    guarded: dict[int, Record] = {}  # stored posts restored or whose content goes: written apart (_guarded)
    back = (existing.get((m.platform, m.external_id)) for m in batch if m.event == "restore")
    moderated = await _moderated(session, [r.id for r in back if r is not None])  # deleted now or earlier in the batch
    # deletions that came before their post (listener.unseen): kept, and applied when it comes
    early = await unseen.pending(session, {(m.platform, m.external_id) for m in batch} - existing.keys())
    kept: dict[tuple[str, str], bool] = {}
    spent: set[tuple[str, str]] = set()
    results: list[Ingested] = []
    for m in batch:
        key = (m.platform, m.external_id)
        row = existing.get(key)
        if m.event == "delete":
            purge = m.remove_content and row is not None and not _erased(row) and row.text != DELETED_TEXT
            own = row is not None and row.deleted_with_thread and own_deletion(m)  # the thread's recovery leaves it
            if row is not None and (purge or not row.deleted or own):
                row.set(**(removed(m, row.url) if purge else dict(deleted=True, hidden=True)),
                        **({"deleted_with_thread": False} if own else {}))
                if purge and row.id is not None:
                    guarded[row.id] = row
                results.append(Ingested(row.id, "deleted"))
            else:
                if row is None:
                    early[key] = kept[key] = m.remove_content or early.get(key, False)
                results.append(Ingested(row.id if row else None, "duplicate"))
            continue
        text, truncated = clean_text(m.text)
        raw = _raw(m, truncated)
        if row is not None:
            if _erased(row) or (content_removed(row) and m.event != "restore"):  # no words back but a restore's
                results.append(Ingested(row.id, "duplicate"))
            elif m.event == "restore" and row.deleted:  # back, with the words it shows now (see _guarded)
                if text != row.text:
                    row.set(edited_at=m.edited_at or row.edited_at)
                # written even when unchanged: a purge removing the content since it was read is undone
                row.set(text=text, content_hash=content_key(text))
                shown = {} if row.id in moderated else {"hidden": False}  # the deletion's hide only
                held = conversations[thread_key(m)].platform_deleted_at is not None  # its thread still deleted
                row.set(deleted=held, deleted_with_thread=held, raw=raw, url=m.url or row.url, **shown)
                if row.id is not None:  # a post new in this batch: the INSERT carries the restore
                    guarded[row.id] = row
                results.append(Ingested(row.id, "deleted" if held else "restored"))
            elif m.edited_at and (row.edited_at is None or utc(m.edited_at) > row.edited_at) and text != row.text:
                # the version now shown (an X edit has its own id)
                row.set(text=text, edited_at=m.edited_at, content_hash=content_key(text), raw=raw, url=m.url or row.url)
                results.append(Ingested(row.id, "edited"))
            else:
                results.append(Ingested(row.id, "duplicate"))
            continue
        author = authors.get((m.platform, author_key(m))) if author_key(m) else None
        conv = conversations[thread_key(m)]
        held = conv.platform_deleted_at is not None  # a post of a deleted thread: stored deleted, untriaged
        gone = early.pop(key, None)  # deleted before it came: stored deleted (a restore comes after its deletion)
        if gone is not None:
            kept.pop(key, None)
            spent.add(key)
            gone = None if m.event == "restore" else gone
        conv.set(last_activity_at=max(conv.last_activity_at or utc(m.created_at), utc(m.created_at)))
        if author is not None and author.customer_id and not conv.customer_id:
            conv.set(customer_id=author.customer_id)
        row = Record(dict(
            platform=m.platform, external_id=m.external_id, author_id=author.id if author else None,
            text=text, url=m.url, lang=m.lang, kind=m.kind, channel=m.channel, is_public=m.is_public,
            created_at=m.created_at, edited_at=m.edited_at, in_reply_to=m.in_reply_to,
            platform_conversation_id=m.conversation_id, content_hash=content_key(text), raw=raw,
            hidden=gone is not None, deleted=held or gone is not None, deleted_with_thread=held and gone is None))
        if gone:  # the deletion removed content (listener.deletions)
            row.set(**without_content(m.platform, m.url, raw))
        new.append((row, conv))
        existing[key] = row
        results.append(Ingested(None, "deleted" if held or gone is not None else "new"))
    await _save_threads(session, conversations)
    if kept or spent:
        await unseen.settle(session, kept, spent)
    for row, conv in new:
        row.set(conversation_id=conv.id)
    ids = await insert_rows(session, Mention, [row.values for row, _ in new], KEY["mentions"])
    for (row, _), mention_id in zip(new, ids):
        row.id = mention_id
    await update_rows(session, Mention, ((r.id, r.changes) for r in existing.values()
                                         if r.changes and r.id not in guarded))
    await lock_rows(session, [i for i, row in guarded.items() if row.text == DELETED_TEXT])
    lost = {i for i, row in guarded.items() if not await _guarded(session, row)}  # erased since read: unchanged
    for r in results:
        r.outcome = "duplicate" if r.mention_id in lost else r.outcome
    # what quotes a post whose content went (and did not come back later in the batch)
    await remove_copies(session, [i for i, row in guarded.items() if i not in lost and row.text == DELETED_TEXT])
    # a new post's id was read back after the insert; a deletion of a post never stored has none
    return [Ingested(r.mention_id or getattr(existing.get((m.platform, m.external_id)), "id", None), r.outcome)
            for r, m in zip(results, batch)]


def own_deletion(m: NormalizedMention) -> bool:
    """Does this deletion say the post was deleted on its own, not with its thread? Not a thread's
    first post's (deleting a Discourse topic deletes its first post, and recovering it recovers the
    topic), nor a re-check's 404 (every post of a deleted topic is one)."""
    raw = m.raw if isinstance(m.raw, dict) else {}
    return m.external_id != m.conversation_id and raw.get("status") != 404


async def _moderated(session: AsyncSession, mention_ids: list[int]) -> set[int]:
    """Of these deleted posts, those a moderation action hid. A deletion sets ``hidden`` whatever it
    was, so only these actions tell a moderator's or a rule's hide from the deletion's own: a
    restored post keeps ``hidden`` if one ever hid it (even one shown again since: a moderator
    approves it again), and shows again otherwise."""
    if not mention_ids:
        return set()
    return set(await session.scalars(MODERATED, {"ids": mention_ids}))


async def _guarded(session: AsyncSession, row: Record) -> bool:
    """Write a restored post's or a removed one's changes (and whatever else the batch did to it) in
    one statement that leaves a post erased meanwhile (service.privacy) erased; False then."""
    done = await session.execute(update(Mention).where(
        _M.id == row.id, or_(_M.deleted.is_(False), _M.text != ERASED_TEXT))
        .values(**row.changes).execution_options(synchronize_session=False))
    return done.rowcount == 1


def _erased(row: Record | None) -> bool:
    return row is not None and bool(row.deleted) and row.text == ERASED_TEXT


def _raw(m: NormalizedMention, truncated: bool) -> dict:
    """The platform payload as stored; a cut text is flagged with its original length."""
    raw = dict(m.raw) if isinstance(m.raw, dict) else {"value": str(m.raw)[:1000]}
    if truncated:
        raw["socialcare_truncated_from"] = len(m.text)
    return raw


async def _authors(session: AsyncSession, batch: list[NormalizedMention]) -> dict[tuple[str, str], Record]:
    """Get or create the batch's authors, updating what the platform says about them."""
    wanted = {(m.platform, k): m for m in batch if (k := author_key(m))}
    if not wanted:
        return {}
    found = {key: Record.of(a) for a in await session.execute(AUTHORS, pair_params(wanted))
             if (key := (a.platform, a.author_key)) in wanted}
    new = [key for key in wanted if key not in found]
    links = await _identity_links(session, [wanted[k] for k in new])
    linked = {key: next(((key[0], hk) for hk in handle_key(wanted[key].author_handle, wanted[key].author_id)
                         if (key[0], hk) in links), None) for key in new}
    for key in sorted(new, key=lambda k: linked[k] or ("", "")):  # claims in one order: no deadlock
        m, link = wanted[key], linked[key]
        customer_id = links[link] if link else None
        if link and m.author_id and not link[1].startswith("id:"):  # the CRM's handle alone: this account's now
            customer_id = await claim_handle_link(session, m.platform, link[1], m.author_id)
        found[key] = Record(dict(platform=key[0], author_key=key[1], customer_id=customer_id,
                               **dict.fromkeys(AUTHOR_FIELDS)))
    for key, m in wanted.items():
        a = found[key]
        a.set(platform_user_id=m.author_id or a.platform_user_id, handle=m.author_handle or a.handle,
              display_name=m.author_name or a.display_name,
              followers=m.author_followers if m.author_followers is not None else a.followers,
              account_created_at=m.author_created_at or a.account_created_at)
    created = [found[key] for key in new]
    for a, author_id in zip(created, await insert_rows(session, Author, [a.values for a in created], KEY["authors"])):
        a.id = author_id
    await update_rows(session, Author, ((a.id, a.changes) for a in found.values() if a.changes))
    return found


async def _identity_links(session: AsyncSession, mentions: list[NormalizedMention]) -> dict[tuple[str, str], int]:
    keys = {(m.platform, hk) for m in mentions for hk in handle_key(m.author_handle, m.author_id)}
    if not keys:
        return {}
    return {(p, h): c for p, h, c in await session.execute(LINKS, pair_params(keys)) if (p, h) in keys}


def thread_key(m: NormalizedMention) -> str:
    """The conversation a mention belongs to (a thread's event names it by ``conversation_id``)."""
    root = m.conversation_id or m.in_reply_to or m.external_id
    return f"{m.platform}:{root}"


async def _conversations(session: AsyncSession, batch: list[NormalizedMention]) -> dict[str, Record]:
    """Get or create the thread of each mention; a reply whose parent we stored joins its thread.
    A new thread is written by :func:`_save_threads`, once the batch has set its activity."""
    keys = {thread_key(m) for m in batch if m.event != "delete"}
    parents = {(m.platform, m.in_reply_to) for m in batch if m.in_reply_to and not m.conversation_id}
    parent_conv: dict[str, int] = {}
    if parents:
        for platform, external_id, conversation_id in await session.execute(PARENTS, pair_params(parents)):
            if conversation_id and (platform, external_id) in parents:
                parent_conv[f"{platform}:{external_id}"] = conversation_id
    found = {c.thread_key: Record.of(c)
             for c in await session.execute(THREADS, {"keys": list(keys)})} if keys else {}
    by_id = {c.id: c for c in found.values()}  # one row per thread, however it was reached
    if missing := set(parent_conv.values()) - set(by_id):
        by_id.update({c.id: Record.of(c) for c in await session.execute(THREADS_BY_ID, {"ids": list(missing)})})
    now = utcnow()
    for key in keys:
        if key in found:
            continue
        if key in parent_conv and parent_conv[key] in by_id:
            found[key] = by_id[parent_conv[key]]
            continue
        platform = key.split(":", 1)[0]
        found[key] = Record(dict(thread_key=key, platform=platform, customer_id=None, last_activity_at=now,
                                 platform_deleted_at=None))
    return found


async def _save_threads(session: AsyncSession, threads: dict[str, Record]) -> None:
    """Insert the new threads and update the activity (and customer) of the stored ones."""
    created = list({id(c): c for c in threads.values() if c.id is None}.values())
    for c, conv_id in zip(created, await insert_rows(session, Conversation, [c.values for c in created],
                                                      KEY["conversations"])):
        c.id = conv_id
    stored = {c.id: c for c in threads.values() if c.changes}
    await update_rows(session, Conversation, ((i, c.changes) for i, c in stored.items()))
