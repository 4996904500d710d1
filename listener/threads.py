"""Thread-wide platform events: a whole thread deleted or recovered on its platform.

A Discourse topic a moderator deletes takes every post of it off the forum, yet its webhook
(``topic_destroyed``) names the topic alone, and a topic may hold tens of thousands of posts. So it
is one event for the thread (``thread_delete`` / ``thread_restore``, :data:`THREAD_EVENTS`), applied
here with set-based UPDATEs keyed by the conversation, in the ingest batch's transaction: no
statement binds a parameter per post (PostgreSQL takes at most 32,767), and none touches ``hidden``
(a moderator's or a rule's hide outlives any platform event), ``raw`` or the text (nothing is read
and written back, so a concurrent erasure or purge is never undone).

The thread's state is on its conversation: ``platform_deleted_at`` (None: shown) and
``platform_state_at``, the time of the last thread event applied. Events are ordered by their own
time (a deletion's is the topic's ``deleted_at``; a recovery's, which Discourse does not send, when
our webhook received it): one not newer than ``platform_state_at`` is stale (a webhook Discourse
retried after a newer event, or the same message delivered again) and changes nothing. The two
clocks are taken to agree within seconds (NTP).

A post knows which deletion took it (``deleted_with_thread``). A recovery shows again exactly those,
never one its author or a moderator deleted on its own, nor one erased on a privacy request
(``ERASED_TEXT``), and returns their ids: the ingest stage sends each to triage again, as it does a
restored post. While the thread is deleted here :mod:`listener.ingest` stores a new post of it
deleted with the thread (untriaged), a post recovered on its own stays deleted with the thread, and
one deleted on its own (:func:`listener.ingest.own_deletion`) is no longer the thread's to show.

A restore of a thread's root post in a thread deleted here recovers the thread as well: Discourse
recovers a topic with its first post, and where both webhooks were missed (the endpoint down) the
re-check sees that post back on the forum's pages, never the topic.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from listener.ingest import Ingested, thread_key
from listener.protocol import THREAD_EVENTS, NormalizedMention, utc
from models import Conversation, Mention
from models.bulk import add_rows
from models.mentions import ERASED_TEXT

_M, _C = Mention.__table__.c, Conversation.__table__.c
_AT = bindparam("at")
_NEWER = and_(_C.thread_key == bindparam("key"), or_(_C.platform_state_at.is_(None), _C.platform_state_at < _AT))
DELETE_THREAD = update(Conversation.__table__).where(_NEWER).values(
    platform_deleted_at=_AT, platform_state_at=_AT).returning(_C.id)
RESTORE_THREAD = update(Conversation.__table__).where(_NEWER).values(
    platform_deleted_at=None, platform_state_at=_AT).returning(_C.id)
RESTORE_DELETED_THREAD = RESTORE_THREAD.where(_C.platform_deleted_at.is_not(None))
_IN_THREAD = and_(_M.conversation_id == bindparam("cid"), _M.platform == bindparam("on"))
HIDE_POSTS = update(Mention.__table__).where(_IN_THREAD, _M.deleted.is_(False)).values(
    deleted=True, deleted_with_thread=True)
SHOW_POSTS = update(Mention.__table__).where(_IN_THREAD, _M.deleted_with_thread.is_(True), _M.text != ERASED_TEXT).values(
    deleted=False, deleted_with_thread=False).returning(_M.id)
KNOWN = select(_C.id).where(_C.thread_key == bindparam("key"))
DELETED_THREADS = select(_C.thread_key, _C.platform_deleted_at).where(
    _C.thread_key.in_(bindparam("keys", expanding=True)), _C.platform_deleted_at.is_not(None))

Posts = Callable[[AsyncSession, list[NormalizedMention]], Awaitable[list[Ingested]]]


def is_root_restore(m: NormalizedMention) -> bool:
    return m.event == "restore" and bool(m.conversation_id) and m.external_id == m.conversation_id


async def apply(session: AsyncSession, m: NormalizedMention, *, only_if_deleted: bool = False) -> tuple[bool, list[int]]:
    """Apply one thread event: whether it changed the thread's state (False: stale, or a recovery of a
    thread never stored), and the ids of the posts it showed again. A deletion of a thread never
    stored is kept all the same, as the thread's state without posts: Discourse's webhooks are sent
    from a queue, so a topic deleted seconds after it was made (spam, typically) may be announced
    before its posts are, which then find it deleted and are stored deleted with it."""
    params = {"key": thread_key(m), "at": utc(m.created_at)}
    if m.event == "thread_delete":
        conv = await session.scalar(DELETE_THREAD, params)
        if conv is not None:
            await session.execute(HIDE_POSTS, {"cid": conv, "on": m.platform})
            return True, []
        if await session.scalar(KNOWN, params) is None:  # a concurrent insert of it fails the batch, retried
            await add_rows(session, Conversation, [dict(thread_key=params["key"], platform=m.platform,
                                                        last_activity_at=params["at"], platform_deleted_at=params["at"],
                                                        platform_state_at=params["at"])])
            return True, []
        return False, []
    conv = await session.scalar(RESTORE_DELETED_THREAD if only_if_deleted else RESTORE_THREAD, params)
    if conv is None:
        return False, []
    return True, list(await session.scalars(SHOW_POSTS, {"cid": conv, "on": m.platform}))


async def ingest_batch(session: AsyncSession, batch: list[NormalizedMention], posts: Posts) -> list[Ingested]:
    """The batch in order, in the caller's transaction: each run of post events through ``posts``
    (:mod:`listener.ingest`), each thread event applied between runs, so that a post earlier in the
    batch goes with its thread's deletion and one after it finds its thread deleted."""
    out: list[Ingested] = []
    run: list[NormalizedMention] = []
    for m in [*batch, None]:
        if m is not None and m.event not in THREAD_EVENTS:
            run.append(m)
            continue
        if run:
            out += await _run(session, run, posts)
            run = []
        if m is not None:
            changed, shown = await apply(session, m)
            out.append(Ingested(None, "thread" if changed else "duplicate", tuple(shown)))
    return out


async def _run(session: AsyncSession, run: list[NormalizedMention], posts: Posts) -> list[Ingested]:
    """Post events; a root post's restore in a thread deleted here first recovers the thread (the
    posts it shows again are reported with that restore, for triage). It says only that the topic
    came back after the deletion we hold, not when: so it is timed just after that deletion, and a
    newer deletion, however late it is ingested, still applies (timed by ingest's clock, a deletion
    made while the bus was behind would have read as stale)."""
    roots = {thread_key(m): i for i, m in enumerate(run) if is_root_restore(m)}
    down = dict((await session.execute(DELETED_THREADS, {"keys": list(roots)})).all()) if roots else {}
    shown: dict[int, tuple[int, ...]] = {}
    for key, deleted_at in down.items():
        m = run[roots[key]]
        back = replace(m, event="thread_restore", created_at=utc(deleted_at) + timedelta(microseconds=1))
        _, ids = await apply(session, back, only_if_deleted=True)
        shown[roots[key]] = tuple(ids)
    out = await posts(session, run)
    for i, ids in shown.items():
        out[i].revealed = ids
    return out
