"""Bot API for private cases: one case with its chat, redacted.

A bot may follow a case (its status, who has it, what was said) but never gets into the private
channel: secure links and one-time codes are taken out of the messages, personal data is redacted,
and no field of the customer record is given. The messages are still the customer's words, so
every read is audited (``case.viewed``), as the agent's case page is.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from sqlalchemy import select

from console.api.common import ApiError, api, known_query, path_id
from console.auth import require
from console.keys import PRINCIPAL, RUNTIME
from escalation.chat import history
from escalation.links import shown_without_links
from models import Case, CaseMessage, User
from service.audit import record
from triage import redact

# a code travels as digits, alone or grouped ("482 913"); more than three digits in a row in a case
# message are taken out whatever the context (an order number is a small loss next to a leaked code)
_DIGITS = re.compile(r"\d(?:[ \-.]?\d){3,}")


def redacted_body(text: str) -> str:
    """A case message as a bot may read it: no secure link, no personal data, no codes."""
    return _DIGITS.sub("[number]", redact(shown_without_links(text)))


def case_json(case: Case, assignee: str | None, mention_ids: list[int], messages: list[CaseMessage]) -> dict[str, Any]:
    def at(value: Any) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": case.id, "status": case.status, "category": case.category, "identity_pending": case.identity_pending,
        "conversation_id": case.conversation_id, "opened_by_mention_id": case.opened_by_mention_id,
        "mention_ids": mention_ids, "assigned_to": assignee,
        "created_at": at(case.created_at), "first_response_due": at(case.first_response_due),
        "resolution_due": at(case.resolution_due), "first_response_at": at(case.first_response_at),
        "resolved_at": at(case.resolved_at),
        "messages": [{"id": m.id, "sender": m.sender, "mention_id": m.mention_id, "at": at(m.created_at),
                      "body": redacted_body(m.body)} for m in messages],
    }


@require("agent", scope="cases:read")
@api
async def get_case(request: web.Request) -> web.Response:
    """One private case: status, category, timestamps, conversation and mention ids, assigned agent,
    and its messages redacted (no secure links, codes or personal data; no customer record)."""
    known_query(request)
    p = request[PRINCIPAL]
    async with request.app[RUNTIME].db.session() as session:
        case = await session.get(Case, path_id(request))
        if case is None:
            raise ApiError(404, "no such case")
        assignee = await session.scalar(select(User.username).where(User.id == case.assigned_to)) \
            if case.assigned_to else None
        messages = await history(session, case.id)
        ids = {m.mention_id for m in messages if m.mention_id}  # the customer's posts that joined the case
        if case.opened_by_mention_id:
            ids.add(case.opened_by_mention_id)
        body = case_json(case, assignee, sorted(ids), messages)
        record(session, p.actor, "case.viewed", "case", case.id, via=p.via)
        await session.commit()
    return web.json_response(body)


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/cases/{id:\\d+}", get_case)]
