"""Agent views of private cases: the queue with SLA state, a case with its chat and the customer
record, taking, resolving and re-linking a case, and moving a public mention private in one click.

Every view of a customer record is audited with who, when and why: on a case page the case is the
reason; outside a case the agent states one (so the case list names the author, never the record).
Every read of a case's chat (page, websocket) is audited as ``case.viewed``. Taking a case another
agent holds is an explicit, audited take-over; their open chat is told. A pending case shows the
record its customer verified as, not linked to the account until the agent says so on resolving
(:mod:`escalation.verification` says why).
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from console import flash
from console.auth import AUTH, Principal, require
from console.case_chat import chat_lines, link_states
from console.error_pages import wants_html
from console.keys import PRINCIPAL, RUNTIME
from console.paths import parse_id, path_id
from console.queries import public_text
from console.render import render
from console.secure import ESCALATION, same_origin, serve_chat
from escalation import chat, sla, verification
from escalation.cases import CaseTaken, assign, resolve
from escalation.handoff import closing_note, escalate_mention, private_handoff
from models import Author, Case, Customer, Mention, SlaBreach, TriageResult, User
from models.base import utcnow
from service.audit import record
from service.dispatch import Dispatcher

RECENT_CASES = 5
MIN_REASON = 10
SNIPPET = 90  # characters of the opening post in the case list (redacted, as everywhere)


def _case_id(request: web.Request) -> int:
    return path_id(request, "case_id")


def _snippet(mention: Mention | None, tri: TriageResult | None) -> str:
    if mention is None:
        return ""
    text = " ".join(public_text(mention, tri).split())
    return text if len(text) <= SNIPPET else text[: SNIPPET - 1] + "…"


async def _deliver(request: web.Request, reply_ids: list[int]) -> None:
    rt = request.app[RUNTIME]
    await Dispatcher.for_settings(rt.db, rt.connectors, rt.settings).deliver(reply_ids)


@require("agent")
async def cases_page(request: web.Request) -> web.Response:
    status = request.query.get("status", "open")
    if status not in ("open", "resolved", "all"):
        raise web.HTTPBadRequest(reason="status is open, resolved or all")
    async with request.app[RUNTIME].db.session() as session:
        q = (select(Case, User.username, Author, Mention, TriageResult)
             .outerjoin(User, User.id == Case.assigned_to)
             .outerjoin(Author, Author.id == Case.author_id)
             .outerjoin(Mention, Mention.id == Case.opened_by_mention_id)
             .outerjoin(TriageResult, TriageResult.mention_id == Case.opened_by_mention_id))
        if status == "open":
            q = q.where(Case.status != "resolved").order_by(Case.first_response_due.asc(), Case.id)
        elif status == "resolved":
            q = q.where(Case.status == "resolved").order_by(Case.resolved_at.desc())
        else:
            q = q.order_by(Case.id.desc())
        rows = [(c, agent, author, _snippet(m, tri)) for c, agent, author, m, tri
                in (await session.execute(q.limit(500))).all()]
        breached, open_breaches = await sla.late_cases(session, [c for c, *_ in rows], utcnow())
    return render(request, "cases.html", rows=rows, breached=breached, shown=status, open_breaches=open_breaches)


@require("agent")
async def case_page(request: web.Request) -> web.Response:
    """The case, its chat, and — to the agent only — the customer record and their recent cases."""
    carried = flash.take(request)
    response = await _case_view(request, error=carried.get("error"))
    flash.forget(request, response)
    return response


async def _case_view(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    case_id = _case_id(request)
    p: Principal = request[PRINCIPAL]
    async with request.app[RUNTIME].db.session() as session:
        case = await session.get(Case, case_id)
        if case is None:
            raise web.HTTPNotFound()
        customer = await session.get(Customer, case.customer_id) if case.customer_id else None
        # pending: whom the customer verified as (the latest shown as the record), not linked yet
        verified_as = await verification.verified_as(session, case) if customer is None else []
        shown = customer or (verified_as[0][0] if verified_as else None)
        recent: list[Case] = []
        if shown is not None:
            recent = list(await session.scalars(select(Case).where(Case.customer_id == shown.id, Case.id != case.id)
                                                .order_by(Case.id.desc()).limit(RECENT_CASES)))
        for viewed in [customer] if customer else [c for c, _ in verified_as]:
            record(session, p.actor, "customer.viewed", "customer", viewed.id, reason=f"case {case.id}")
        record(session, p.actor, "case.viewed", "case", case.id)
        messages = await chat_lines(session, await chat.history(session, case.id))
        links = await link_states(session, case.id)
        assignee = await session.get(User, case.assigned_to) if case.assigned_to else None
        breaches = list(await session.scalars(select(SlaBreach).where(SlaBreach.case_id == case.id)))
        opening = await session.get(Mention, case.opened_by_mention_id) if case.opened_by_mention_id else None
        opening_text = _snippet(opening, await session.get(TriageResult, opening.id) if opening else None)
        await session.commit()
    return render(request, "case.html", status=status, case=case, customer=shown, linked=customer is not None,
                  verified_as=verified_as, recent=recent, messages=messages, links=links, assignee=assignee,
                  breaches={b.kind for b in breaches} | {kind for kind, _ in sla.missed(case, utcnow())},
                  mine=case.assigned_to == p.user_id, opening_text=opening_text, error=error)


@require("agent")
async def take_case(request: web.Request) -> web.Response:
    """Take an unassigned case; one assigned to another agent only with ``force=1`` (the button
    that names them), audited as a take-over and announced on the case's open chat."""
    case_id = _case_id(request)
    p: Principal = request[PRINCIPAL]
    force = (await request.post()).get("force") == "1"
    async with request.app[RUNTIME].db.session() as session:
        case = await session.get(Case, case_id)
        if case is None:
            raise web.HTTPNotFound()
        try:
            assign(session, case, p.user_id, p.actor, take_over=force)
        except CaseTaken as exc:
            holder = await session.get(User, exc.holder_id)
            error = (f"{holder.username if holder else 'another agent'} is assigned to this case; "
                     "take it over to work on it.")
            await session.rollback()
            if wants_html(request) and (moved := flash.redirect(request, f"/cases/{case_id}", error=error)):
                return moved
            return await _case_view(request, error=error, status=409)
        except ValueError as exc:
            raise web.HTTPConflict(reason=str(exc)) from exc
        await session.commit()
    await request.app[ESCALATION].hub.publish(case_id, {"type": "assigned", "agent": p.username})
    raise web.HTTPSeeOther(f"/cases/{case_id}")


async def _own_case(session: AsyncSession, case_id: int, p: Principal) -> Case:
    """The case, for a change only its assigned agent (or an admin, or anyone while unassigned) makes."""
    case = await session.get(Case, case_id)
    if case is None:
        raise web.HTTPNotFound()
    if case.assigned_to not in (None, p.user_id) and p.role != "admin":
        raise web.HTTPForbidden(reason="another agent is assigned to this case")
    return case


@require("agent")
async def resolve_case(request: web.Request) -> web.Response:
    """Resolve; optionally return the customer to the community with a detail-free public note."""
    case_id = _case_id(request)
    p: Principal = request[PRINCIPAL]
    form = await request.post()
    note_ids: list[int] = []
    async with request.app[RUNTIME].db.session() as session:
        case = await _own_case(session, case_id, p)
        if await resolve(session, case, p.actor):
            await sla.check_breaches(session)
            if form.get("return_to_community"):
                note = await closing_note(session, case, p.actor)
                note_ids = [note.id] if note else []
        await session.commit()
    await _deliver(request, note_ids)
    await request.app[ESCALATION].hub.close_case(case_id)
    raise web.HTTPSeeOther(f"/cases/{case_id}")


@require("agent")
async def confirm_identity(request: web.Request) -> web.Response:
    """Link a pending case's account to the record its customer verified as (``customer_id``): an
    agent's decision, taken when sure the account is theirs (escalation.verification: a code proves
    the link holder reads that record's e-mail, not that the account is theirs). Open or resolved."""
    case_id = _case_id(request)
    p: Principal = request[PRINCIPAL]
    chosen = parse_id(str((await request.post()).get("customer_id") or ""))  # not "١" for customer 1
    async with request.app[RUNTIME].db.session() as session:
        case = await _own_case(session, case_id, p)
        if chosen is None or not await verification.confirm_identity(session, case, chosen, p.actor):
            raise web.HTTPBadRequest(reason="the customer did not verify as that record on this case")
        await session.commit()
    raise web.HTTPSeeOther(f"/cases/{case_id}")


@require("agent")
async def relink_case(request: web.Request) -> web.Response:
    """Send the customer a new secure link (the old unused ones stop working)."""
    case_id = _case_id(request)
    p: Principal = request[PRINCIPAL]
    async with request.app[RUNTIME].db.session() as session:
        case = await session.get(Case, case_id)
        if case is None or case.status == "resolved":
            raise web.HTTPNotFound()
        mention = await session.get(Mention, case.opened_by_mention_id) if case.opened_by_mention_id else None
        if mention is None:
            raise web.HTTPConflict(reason="the case has no mention to answer")
        added = await private_handoff(session, case, mention, request.app[RUNTIME].settings, issued_by=p.actor,
                                      again=True)
        await session.commit()
        ids = [r.id for r in added]
    await _deliver(request, ids)
    raise web.HTTPSeeOther(f"/cases/{case_id}")


@require("agent")
async def escalate(request: web.Request) -> web.Response:
    """One click: move a public mention into a private case."""
    p: Principal = request[PRINCIPAL]
    form = await request.post()
    mention_id = parse_id(str(form.get("mention_id", "")).strip())  # typed by the agent: spaces around it go
    if mention_id is None:  # not "١" (another mention), no overflow
        raise web.HTTPBadRequest(reason="mention_id must be a number")
    async with request.app[RUNTIME].db.session() as session:
        mention = await session.get(Mention, mention_id)
        if mention is None:
            raise web.HTTPNotFound(reason="no such mention")
        case, added = await escalate_mention(session, mention, request.app[RUNTIME].settings, p.actor)
        await session.commit()
        case_id, ids = case.id, [r.id for r in added]
    await _deliver(request, ids)
    raise web.HTTPSeeOther(f"/cases/{case_id}")


@require("agent")
async def case_socket(request: web.Request) -> web.StreamResponse:
    """The agent's side of the chat (same origin only; writing needs the case to be theirs). The
    socket lives as long as the session that opened it: the hub hangs it up once its epoch is
    raised (sign-out, disabling, a role change), and each frame re-checks the cookie first."""
    case_id = _case_id(request)
    if not same_origin(request):
        raise web.HTTPForbidden(reason="cross-site websocket")
    p: Principal = request[PRINCIPAL]
    rt = request.app[RUNTIME]
    async with rt.db.session() as session:
        case = await session.get(Case, case_id)
        if case is None:
            raise web.HTTPNotFound()
        record(session, p.actor, "case.viewed", "case", case.id, via="websocket")
        await session.commit()  # recorded before anything of the case is sent
        past = [chat.message_json(m) for m in await chat.history(session, case.id)]
    return await serve_chat(request, case_id, past,
                            lambda ws, data: _agent_message(request, ws, case_id, p, data),
                            agent=(p.user_id, p.epoch))


def _still_agent(opened: Principal, now: Principal | None) -> bool:
    return now is not None and now.user_id == opened.user_id and now.role in ("agent", "admin")


async def _agent_message(request: web.Request, ws: web.WebSocketResponse, case_id: int, p: Principal,
                         data: str) -> None:
    rt, state = request.app[RUNTIME], request.app[ESCALATION]
    async with rt.db.session() as session:
        if not _still_agent(p, await request.app[AUTH].principal(request, session)):
            await ws.send_json({"type": "closed"})  # signed out, disabled or no longer an agent
            await ws.close()
            return
        case = await session.get(Case, case_id)
        if case is None:
            return
        ref = chat.frame_ref(data)
        try:
            message = await chat.post(session, case, "agent", chat.parse_frame(data), user_id=p.user_id)
        except chat.ChatError as exc:
            await ws.send_json({"type": "error", "error": str(exc), "ref": ref})
            return
        await session.commit()
        event = {"type": "message", "message": chat.message_json(message)}
    await ws.send_json({"type": "sent", "ref": ref, "id": message.id})  # stored: the sender may clear its box
    await state.hub.publish(case_id, event)


@require("agent")
async def customer_page(request: web.Request) -> web.Response:
    """A customer record outside a case: the agent states why before seeing it."""
    customer_id = path_id(request, "customer_id")
    p: Principal = request[PRINCIPAL]
    reason = ""
    if request.method == "POST":
        reason = str((await request.post()).get("reason", "")).strip()[:500]
    async with request.app[RUNTIME].db.session() as session:
        customer = await session.get(Customer, customer_id)
        if customer is None:
            raise web.HTTPNotFound()
        if len(reason) < MIN_REASON:
            error = "State why you need this record (at least 10 characters)." if request.method == "POST" else None
            return render(request, "case_customer.html", customer_id=customer_id, customer=None, error=error,
                          status=400 if error else 200)
        record(session, p.actor, "customer.viewed", "customer", customer.id, reason=reason)
        recent = list(await session.scalars(select(Case).where(Case.customer_id == customer.id)
                                            .order_by(Case.id.desc()).limit(RECENT_CASES)))
        await session.commit()
    return render(request, "case_customer.html", customer_id=customer_id, customer=customer, recent=recent,
                  reason=reason, error=None)


@require("agent", scope="cases:read")
async def api_breaches(request: web.Request) -> web.Response:
    """Open SLA breaches (for dashboards and alerting)."""
    async with request.app[RUNTIME].db.session() as session:
        rows = await sla.breaches(session)
        open_cases = await session.scalar(select(func.count()).select_from(Case).where(Case.status != "resolved"))
    return web.json_response({
        "open_cases": open_cases,
        "breaches": [{"case_id": c.id, "kind": b.kind, "due_at": b.due_at.isoformat(),
                      "detected_at": b.detected_at.isoformat(), "status": c.status} for b, c in rows],
    })


def routes() -> list[web.RouteDef]:
    return [
        web.get("/cases", cases_page),
        web.post("/cases/escalate", escalate),
        web.get(r"/cases/{case_id:\d+}", case_page),
        web.post(r"/cases/{case_id:\d+}/take", take_case),
        web.post(r"/cases/{case_id:\d+}/resolve", resolve_case),
        web.post(r"/cases/{case_id:\d+}/link", relink_case),
        web.post(r"/cases/{case_id:\d+}/identity", confirm_identity),
        web.get(r"/cases/{case_id:\d+}/ws", case_socket),
        web.get(r"/customers/{customer_id:\d+}", customer_page),
        web.post(r"/customers/{customer_id:\d+}", customer_page),
        web.get("/api/v1/cases/breaches", api_breaches),
    ]

