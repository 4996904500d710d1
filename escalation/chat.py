"""The 1:1 chat of a case: messages stored as CaseMessage rows, fanned out to open websockets.

The hub is in-process; every message is committed before it is published, so a participant who
reconnects (or whose peer is served by another process) gets it from the history.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Case, CaseMessage
from models.base import utcnow

log = logging.getLogger("socialcare.escalation.chat")
MAX_MESSAGE_CHARS = 4000
HISTORY_LIMIT = 500


class ChatError(ValueError):
    """A message that cannot be posted (empty, too long, case closed, not the assigned agent)."""


def message_json(m: CaseMessage) -> dict[str, Any]:
    return {"id": m.id, "sender": m.sender, "body": m.body, "at": m.created_at.isoformat()}


async def history(session: AsyncSession, case_id: int, limit: int = HISTORY_LIMIT) -> list[CaseMessage]:
    rows = await session.scalars(select(CaseMessage).where(CaseMessage.case_id == case_id)
                                 .order_by(CaseMessage.id.desc()).limit(limit))
    return list(reversed(list(rows)))


def parse_frame(data: str) -> Any:
    """A websocket frame: ``{"body": "..."}`` (what chat.js sends), or plain text."""
    try:
        frame = json.loads(data)
    except ValueError:
        return data
    return frame.get("body") if isinstance(frame, dict) else frame


def frame_ref(data: str) -> str | None:
    """The sender's own reference for a frame (``{"body": ..., "ref": "m1"}``), echoed back in the
    acknowledgement or the refusal so the sender keeps its text until the message was stored."""
    try:
        frame = json.loads(data)
    except ValueError:
        return None
    ref = frame.get("ref") if isinstance(frame, dict) else None
    return ref if isinstance(ref, str) and 0 < len(ref) <= 40 and ref.isascii() and ref.replace("-", "").isalnum() \
        else None


def clean_body(body: Any) -> str:
    if not isinstance(body, str):
        raise ChatError("a message is text")
    text = body.replace("\r\n", "\n").strip()
    if not text:
        raise ChatError("the message is empty")
    if len(text) > MAX_MESSAGE_CHARS:
        raise ChatError(f"a message has at most {MAX_MESSAGE_CHARS} characters")
    return "".join(ch for ch in text if ch in "\n\t" or ch.isprintable())


async def post(session: AsyncSession, case: Case, sender: str, body: Any, *, user_id: int | None = None,
               now: datetime | None = None) -> CaseMessage:
    """Store a chat message. The first agent message is the case's first response (SLA); an agent
    posting in an unassigned case takes it; only the assigned agent may write in an assigned one."""
    if case.status == "resolved":
        raise ChatError("the case is resolved")
    text = clean_body(body)
    now = now or utcnow()
    if sender == "agent":
        if user_id is None:
            raise ChatError("an agent message needs the agent")
        if case.assigned_to is None:
            case.assigned_to = user_id
        elif case.assigned_to != user_id:
            raise ChatError("another agent is assigned to this case")
        if case.first_response_at is None:
            case.first_response_at = now
    elif sender != "customer":
        raise ChatError(f"unknown sender {sender!r}")
    msg = CaseMessage(case_id=case.id, sender=sender, user_id=user_id, body=text, created_at=now)
    session.add(msg)
    await session.flush()
    return msg


# fields of an event a customer's socket never gets: the console user name of the agent
AGENT_ONLY = frozenset({"agent"})
Liveness = Callable[[set[Any]], Awaitable[set[Any]]]


def customer_view(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in AGENT_ONLY}


class ChatHub:
    """Open websockets per case; ``publish`` sends a JSON event to each of them.

    A socket outlives the check made when it opened, so each joins with what signed it in: a
    customer's with its customer session, an agent's with its user id and session epoch. Before
    each event it is sent, that is asked again (``live``: the session ended, expired, was revoked by
    an erasure in another process, its case resolved; ``agents_live``: the agent signed out,
    was disabled or changed role, anywhere) and a dead socket is told "closed" and hung up, as
    :meth:`end_session`, :meth:`end_user` and :meth:`sweep` do. Customers get each event without
    the agent's user name (:data:`AGENT_ONLY`)."""

    def __init__(self, live: Liveness | None = None, agents_live: Liveness | None = None) -> None:
        self._subs: dict[int, set[Any]] = defaultdict(set)
        self._sessions: dict[Any, int] = {}  # a customer's socket: its customer session's id
        self._agents: dict[Any, tuple[int, int]] = {}  # an agent's socket: (user id, session epoch)
        self.live = live
        self.agents_live = agents_live

    def join(self, case_id: int, ws: Any, session_id: int | None = None, *,
             agent: tuple[int, int] | None = None) -> None:
        self._subs[case_id].add(ws)
        if session_id is not None:
            self._sessions[ws] = session_id
        if agent is not None:
            self._agents[ws] = agent

    def leave(self, case_id: int, ws: Any) -> None:
        self._sessions.pop(ws, None)
        self._agents.pop(ws, None)
        subs = self._subs.get(case_id)
        if subs is not None:
            subs.discard(ws)
            if not subs:
                del self._subs[case_id]

    def case_ids(self) -> list[int]:
        return list(self._subs)

    def watchers(self, case_id: int) -> int:
        return len(self._subs.get(case_id, ()))

    @staticmethod
    async def _alive(sockets: dict[Any, Any], live: Liveness | None, whose: str) -> set[Any]:
        """The sockets whose sign-in ``live`` still finds; the others are hung up. When the check
        fails, none (they get what they missed from the history, once it works again)."""
        if not sockets:
            return set()
        if live is None:
            return set(sockets)
        try:
            found = await live(set(sockets.values()))
        except Exception as exc:  # noqa: BLE001 - a database hiccup must not break the other side
            log.warning("checking %s failed: %s", whose, type(exc).__name__)
            return set()
        for ws, key in sockets.items():
            if key not in found:
                await _hang_up(ws)
        return {ws for ws, key in sockets.items() if key in found}

    async def _checked(self, sockets: list[Any]) -> set[Any]:
        customers = {ws: self._sessions[ws] for ws in sockets if ws in self._sessions}
        agents = {ws: self._agents[ws] for ws in sockets if ws in self._agents}
        unsigned = {ws for ws in sockets if ws not in customers and ws not in agents}
        return (unsigned | await self._alive(customers, self.live, "customer sessions")
                | await self._alive(agents, self.agents_live, "agents' sessions"))

    async def publish(self, case_id: int, event: dict[str, Any]) -> None:
        targets = [ws for ws in self._subs.get(case_id, ()) if not ws.closed]
        customers = {ws for ws in targets if ws in self._sessions}
        alive = await self._checked(targets)
        shown = customer_view(event)
        sends = [ws.send_json(shown if ws in customers else event) for ws in targets if ws in alive]
        results = await asyncio.gather(*sends, return_exceptions=True)
        for r in results:
            if isinstance(r, Exception):
                log.debug("a chat socket of case %s went away: %s", case_id, type(r).__name__)

    async def end_session(self, session_id: int) -> None:
        """Hang up the sockets of a customer session that ended (in this process)."""
        for ws, sid in list(self._sessions.items()):
            if sid == session_id:
                await _hang_up(ws)

    async def end_user(self, user_id: int) -> None:
        """Hang up the sockets of a console user whose sessions ended (in this process)."""
        for ws, (uid, _) in list(self._agents.items()):
            if uid == user_id:
                await _hang_up(ws)

    async def sweep(self) -> None:
        """Hang up every socket whose sign-in is no longer live (expiry, erasure, sign-out elsewhere)."""
        await self._checked([ws for ws in [*self._sessions, *self._agents] if not ws.closed])

    async def sweep_every(self, seconds: float, stop: asyncio.Event) -> None:
        """:meth:`sweep` until ``stop``: an idle socket gets no event to be checked by."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), seconds)
            except TimeoutError:
                try:
                    await self.sweep()
                except Exception as exc:  # noqa: BLE001 - the next sweep tries again
                    log.warning("sweeping chat sockets failed: %s", type(exc).__name__)

    async def close_case(self, case_id: int) -> None:
        """Tell every participant the case is closed and hang up."""
        await self.publish(case_id, {"type": "closed"})
        for ws in list(self._subs.get(case_id, ())):
            await ws.close()


async def _hang_up(ws: Any) -> None:
    try:
        await ws.send_json({"type": "closed"})  # the chat page stops reconnecting
    except Exception as exc:  # noqa: BLE001 - gone already
        log.debug("a chat socket went away: %s", type(exc).__name__)
    await ws.close()
