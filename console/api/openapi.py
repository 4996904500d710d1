"""The OpenAPI 3.0 description of the bot API, served at ``/api/openapi.json``: its paths, and who
may call each (read from the routes' own guards). Schemas and parameters: :mod:`console.api.openapi_schemas`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from console.api.actions import ACTIONS, NEEDS_REASON
from console.api.deadletters import ID_PATTERN, MAX_SHOWN, PAGE, IdsIn
from console.api.mentions import ReplyIn
from console.api.openapi_schemas import (
    BOOL,
    ID,
    IDEMPOTENCY_HEADER,
    INT,
    NAME,
    OBJ,
    SCHEMAS,
    STR,
    TIME,
    action_body,
    array_of,
    error_responses,
    json_content,
    model_schema,
    nullable,
    obj,
    operation,
    query_param,
    ref,
)
from console.api.settle import ActionSettleIn, ReplySettleIn
from console.api.templates import NewTemplate, TemplateIn
from console.api.webhooks import SubscriptionIn
from console.auth import SCOPE_ROLES, roles_for_scope
from console.poll_cursor import MAX_PASSED, ROUTING_HOLD
from models import ROLES, ROUTE_OUTCOMES
from models.console import WEBHOOK_EVENTS
from service.stages.base import STAGES
from triage.protocol import SENSITIVITY_LABELS, SENTIMENT_LABELS

WITHHELD = ("Private messages, reports of account takeovers or fraud (sensitivity `security` or `fraud`, or "
            "routed `escalate_private`) and private replies are the care team's: for a token of a user who is not "
            "an agent (or admin) such posts are withheld — left out of lists, 404 by id — and only public "
            "replies are listed.")


HOLD = f"{ROUTING_HOLD.total_seconds() / 60:g} minutes"
CURSOR = ("For polling, give `since_id` instead of `offset`: routed mentions with a greater id, in ascending "
          "id order, and `next_since_id` to pass back on the next poll. The cursor never passes over a "
          "mention that may still show: a page stops before the lowest mention not routed yet (a triage backlog, a "
          f"message retried), up to {HOLD} after its ingest, and before an id not committed yet (a "
          "database transaction still open). It passes a mention not routed only when it is deleted on its "
          f"platform, its message is in the dead letters (at once), or it is still not routed {HOLD} after "
          "ingest (a lost message), and then says so: its id is in `passed_unrouted`. A mention is in one page at most, and a page never goes "
          "back: bots still de-duplicate by id (a retried request repeats its page).")
PASSED_UNROUTED = (f"with since_id: the ids this page's cursor moved past while not routed (deleted on their "
                   f"platform, dead-lettered, or not routed {HOLD} after ingest), ascending, at most "
                   f"{MAX_PASSED}; one routed later is in no later page — read it by id")


def spec(base_url: str = "/") -> dict[str, Any]:
    template_out = obj(name=STR, variants={**OBJ, "additionalProperties": STR, "description": "tone → body"},
                       issue_types=array_of(STR), channel={**STR, "description": "a platform, or `any`"},
                       article_slug={**nullable(STR), "description": "the knowledge article whose link the "
                                                                     "template gives as `article_url`"},
                       updated_at=nullable(TIME))
    period = {"type": "string", "enum": ["day", "week"]}
    day = {"type": "string", "format": "date"}
    paths = {
        "/api/v1/mentions": {"get": operation(
            "Routed mentions with their triage, redacted", "mentions:read", {
                "200": json_content(obj(["mentions", "limit", "offset"], mentions=array_of(ref("MentionSummary")),
                                  limit=INT, offset=INT, since_id=INT,
                                  next_since_id={**INT, "description": "with since_id: pass it back as since_id "
                                                                       "on the next poll"},
                                  passed_unrouted={**array_of(INT), "description": PASSED_UNROUTED}))},
            description="Order: priority (highest first), then newest, then highest id — a total order, so "
                        "limit/offset pages neither repeat nor skip a mention while nothing changes. " + CURSOR
                        + " " + WITHHELD,
            params=[query_param("outcome", {"type": "string", "enum": list(ROUTE_OUTCOMES)}),
                    query_param("platform", {"type": "string", "maxLength": 32}, "any platform name; an unknown one "
                                                                        "matches nothing"),
                    query_param("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}),
                    query_param("offset", {"type": "integer", "minimum": 0, "maximum": 1_000_000, "default": 0}),
                    query_param("since_id", {"type": "integer", "minimum": 0, "maximum": 4611686018427387903},
                       "only mentions with a greater id, in ascending id order (not with offset)")],
            errors=(400, 401, 403))},
        "/api/v1/mentions/{id}": {"get": operation("One mention: triage with explanations, route, replies",
                                             "mentions:read", {"200": json_content(ref("Mention"))}, params=[ID],
                                             description=WITHHELD + " A moderator's token still reads a post "
                                                         "held, reported or alerted for the moderators.",
                                             errors=(401, 403, 404))},
        "/api/v1/mentions/{id}/replies": {"post": operation(
            "Reply to a mention (text, or a template and tone); idempotent with `idempotency_key` or the "
            "`Idempotency-Key` header. A public reply is refused (422) when it holds a card number, IBAN, national "
            "ID, password or code, the customer's own e-mail or phone, answers a matter handled in a private "
            "channel, or answers a post deleted on its platform (a private reply still goes) or erased here",
            "replies:write", {
                "200": json_content(obj(reply=ref("Reply"), created={"type": "boolean", "enum": [False]}),
                             "Already created with this key (any status but `failed`)"),
                "201": json_content(obj(reply=ref("Reply"), created={"type": "boolean", "enum": [True]}),
                                    "Created: `reply.status` says what became of it (`sent`, `failed`, "
                                    "`dry_run`, `pending` held back, ...)"),
                "423": json_content(ref("Error"), "The operator switched bot replies off on the mention's channel "
                                                  "(`bot_enabled`): nothing was recorded"),
                "429": {**json_content(ref("Error"), "The channel's hourly rate of bot replies or its pace is "
                                                     "reached: nothing was recorded; try again after `Retry-After` "
                                                     "seconds (also `retry_after` in the body)"),
                        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1},
                                                    "description": "seconds to wait"}}}},
            description="Replies posted here are a bot's (kind `bot_api`) and obey the channel's bot policy as "
                        "the service's own automatic answers do: `bot_enabled` off is a 423; a channel in bot dry "
                        "run (`bot_dry_run_channels`) records the reply `dry_run`; they count toward the channel's "
                        "hourly rate of bot replies (`bot_rate_per_hour`) and share its pace with incident "
                        "replies (`incident_broadcast_per_minute`, only for a reply that goes out): past either, "
                        "a 429 with `Retry-After`. A conversation another agent is working on (a live claim) is a "
                        "409. The service's reserved templates (its own notices: the secure link's, the "
                        "personal-data notice, incident and closing notes) are a 422: it sends them itself, with "
                        "what they announce. A 201 can carry a reply that `failed` (the platform refused it: "
                        "`error` says why); sending the same idempotency key again makes a new attempt.",
            params=[ID, IDEMPOTENCY_HEADER], body=model_schema(ReplyIn),
            errors=(400, 401, 403, 404, 409, 415, 422))},
        "/api/v1/mentions/{id}/actions": {"post": operation(
            f"Act on a mention: {', '.join(ACTIONS)} (`report` holds it for the moderators with `reason` "
            f"as the note; {', '.join(NEEDS_REASON)} need a reason)", "actions:write",
            {"200": json_content(ref("ActionResult"))}, params=[ID],
            description="hide, unhide, remove, approve, lock and ban on a post erased on a privacy request, "
                        "before or while the action is carried out, answer 410: the action is `cancelled`, "
                        "never sent to the platform. On a post deleted on its platform, hide, unhide, remove, "
                        "approve, lock and report answer 409 (nothing can be done to it there); ban still goes. "
                        "A private matter (see GET /api/v1/mentions) is 404 to a token of a moderator, unless the "
                        "post is held, reported or alerted for the moderators. As in the console, escalate, "
                        "resolve and tag are the care team's: a moderator's token gets 403, except escalate of a "
                        "post held in the moderation queue (the queue's decision: the hold is marked reviewed). "
                        "escalate (by an agent) and resolve on a conversation another agent is working on (a live "
                        "claim) answer 409 and do nothing, unless `take_over` is true: the claim is taken over "
                        "(escalate keeps it, resolve drops it), audited `conversation.taken_over`.",
            body=action_body(), errors=(400, 401, 403, 404, 409, 410, 415, 422))},
        "/api/v1/queue": {"get": operation(
            "The agent queue, in priority and SLA order", "mentions:read", {
                "200": json_content(obj(items=array_of(ref("QueueItem")), limit=INT, offset=INT,
                                  has_more={**BOOL, "description": "the queue goes on after this page"}))},
            description="Order: unanswered first, then priority band, then the earliest first-response "
                        "deadline. Pages with limit/offset; `has_more` says whether another page follows.",
            params=[query_param("channel", {"type": "string", "maxLength": 80}, "a platform name"),
                    query_param("issue_type", {"type": "string", "maxLength": 80}, "an issue type (the taxonomy is "
                                                                          "configurable: an unknown one matches "
                                                                          "nothing)"),
                    query_param("sentiment", {"type": "string", "enum": list(SENTIMENT_LABELS)}),
                    query_param("sensitivity", {"type": "string", "enum": list(SENSITIVITY_LABELS)}),
                    query_param("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 300}),
                    query_param("offset", {"type": "integer", "minimum": 0, "maximum": 5000, "default": 0})],
            errors=(400, 401, 403))},
        "/api/v1/cases/{id}": {"get": operation(
            "One private case: status, category, timestamps, conversation and mention ids, assigned agent and "
            "its messages, redacted (no secure links, codes or personal data; no customer record fields); "
            "every read is audited", "cases:read", {"200": json_content(ref("Case"))}, params=[ID],
            errors=(400, 401, 403, 404))},
        "/api/v1/ingest": {"post": {
            "summary": "Mentions in, one JSON object per line (token scope `ingest`, on an admin's token; or the "
                       "running service's local ingest token, as `socialcare replay` uses)",
            "description": "Every line is checked as ingest will store it; one bad line refuses the whole body "
                           "(400, `lines` names each with its number) and nothing is queued.\n\nRoles: admin. "
                           "Token scope: `ingest`.",
            "x-roles": ["admin"], "x-token-scope": "ingest",  # checked in the handler (it also takes the local token)
            "requestBody": {"required": True, "content": {"application/x-ndjson": {
                "schema": {**array_of(ref("IngestLine")), "maxItems": 10_000}}}},
            "responses": {"202": json_content(obj(accepted=INT), "Queued for ingest"),
                          **error_responses(400, 401, 403)}}},
        "/api/v1/templates": {
            "get": operation("List answer templates", "templates:read", {
                "200": json_content({"type": "object", "properties": {"templates": {"type": "array", "items": template_out}}})}),
            "post": operation("Create a template", "templates:write", {"201": json_content(template_out, "Created")},
                        body=model_schema(NewTemplate), errors=(400, 401, 403, 409, 415, 422))},
        "/api/v1/templates/{name}": {
            "get": operation("One template", "templates:read", {"200": json_content(template_out)}, params=[NAME],
                       errors=(401, 403, 404)),
            "put": operation("Replace a template", "templates:write", {"200": json_content(template_out)}, params=[NAME],
                       body=model_schema(TemplateIn), errors=(400, 401, 403, 404, 415, 422)),
            "delete": operation("Delete a template", "templates:write", {"204": {"description": "Deleted"}},
                          params=[NAME], errors=(401, 403, 404))},
        "/api/v1/webhooks": {
            "get": operation("Outgoing webhook subscriptions (admin)", "webhooks", {"200": json_content(OBJ)}),
            "post": operation(f"Subscribe to events ({', '.join(WEBHOOK_EVENTS)}); bodies are signed: header "
                        "`X-Socialcare-Signature: t=<unix>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">`",
                        "webhooks", {"201": json_content(OBJ, "Created; the secret is shown once")},
                        body=model_schema(SubscriptionIn), errors=(400, 401, 403, 415, 422))},
        "/api/v1/webhooks/{id}": {"delete": operation("Unsubscribe", "webhooks", {"204": {"description": "Deleted"}},
                                                params=[ID], errors=(401, 403, 404))},
        "/api/v1/webhooks/{id}/deliveries": {"get": operation(
            "Recent deliveries with their attempts", "webhooks", {"200": json_content(OBJ)},
            params=[ID, query_param("limit", {"type": "integer", "minimum": 1, "maximum": 500})], errors=(400, 401, 403, 404))},
        "/api/v1/metrics/summary": {"get": operation(
            "Service measures: deflected, cases created/solved, escalated, first-contact resolution, service "
            "level, median and p90 first response, repeat contacts", "metrics", {"200": json_content(OBJ)},
            params=[query_param("period", {"type": "string", "enum": ["day", "week", "month"]}),
                    query_param("start", {"type": "string", "format": "date-time"}),
                    query_param("end", {"type": "string", "format": "date-time"})], errors=(400, 401, 403))},
        "/api/v1/digest": {"get": operation("The sentiment digest's numbers", "digest:read", {"200": json_content(OBJ)},
                                      params=[query_param("period", period),
                                              query_param("end", day, "the period runs through this day (UTC), up to the "
                                                             "midnight after it; default: up to now")],
                                      errors=(400, 401, 403))},
        "/api/v1/connectors": {"get": operation(
            "Each platform connector: state (`running`, `backing_off`, `stopped`; `starting`, or `unknown` "
            "without a report from the listener process), last error, what it listens to, last poll time",
            "connectors:read", {"200": json_content({"type": "object", "properties": {"connectors": {
                "type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "platform": {"type": "string"},
                    "state": {"type": "string", "enum": ["starting", "running", "backing_off", "stopped",
                                                         "unknown"]},
                    "last_error": {"type": "string", "nullable": True}, "listens_to": {"type": "string"},
                    "last_poll_at": {"type": "string", "format": "date-time", "nullable": True},
                    "retry_at": {"type": "string", "format": "date-time", "nullable": True},
                    "mentions_seen": {"type": "integer"}, "stopped_by_error": {"type": "boolean"},
                    "stale": {"type": "boolean"}}}}}})})},
    }
    paths.update(deadletter_paths())
    paths.update(settle_paths())
    scopes = "; ".join(f"`{s}`: {', '.join(roles_for_scope(s))}" for s in SCOPE_ROLES)
    return {
        "openapi": "3.0.3",
        "info": {"title": "socialcare bot API", "version": "1",
                 "description": "JSON over HTTPS. Bots authenticate with `Authorization: Bearer <token>` (the "
                                "scheme in any case; `socialcare users token`); every error is `{\"error\": "
                                "{\"status\", \"message\"}}` (plus `details` on a 422). A token opens an "
                                "operation when it holds the operation's scope (or `*`) and its user's role may "
                                f"use the operation. Scopes and the roles that can use them: {scopes}."},
        "servers": [{"url": base_url}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "session": {"type": "apiKey", "in": "cookie", "name": "sc_session"}},
            "schemas": SCHEMAS,
        },
    }


def deadletter_paths() -> dict[str, Any]:
    """/api/v1/deadletters: the admin page's dead letters, for programs."""
    ids, acting = array_of({**STR, "pattern": ID_PATTERN}), (400, 401, 403, 415, 422, 503)
    acted = ("Each id once, in one list: done, or `missing` (retried or discarded already). A bus that stops "
             "answering part-way is a 503 whose `done` and `untried` say how far it got. Audited, ids only.")
    listing = obj(deadletters=array_of(ref("DeadLetter")), total={**INT, "description": "how many match `topic`"},
                   more={**INT, "description": "how many of those are past `limit`"}, limit=INT,
                   counts={**OBJ, "additionalProperties": INT, "description": "dead letters per topic"},
                   bus={"type": "string", "enum": ["inprocess", "redis"], "description": "the web process's "
                        "bus (in-process dead letters are lost when it stops)"})
    return {
        "/api/v1/deadletters": {"get": operation(
            "Dead letters (messages that failed their stage on every delivery), oldest first, no payloads",
            "deadletters", {"200": json_content(listing)}, errors=(400, 401, 403, 503),
            params=[query_param("topic", {"type": "string", "enum": list(STAGES)}, "only this stage's dead letters"),
                    query_param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_SHOWN, "default": PAGE})])},
        "/api/v1/deadletters/{id}": {"get": operation(
            "One dead letter with its payload, personal data redacted; every view is audited", "deadletters",
            {"200": json_content(ref("DeadLetterShown"))}, errors=(400, 401, 403, 404, 503),
            params=[{"name": "id", "in": "path", "required": True, "schema": {**STR, "pattern": ID_PATTERN}}])},
        "/api/v1/deadletters/retry": {"post": operation(
            "Put dead letters back on their topic with a fresh attempt count", "deadletters", {"200": json_content(obj(
                retried=ids, missing=ids, refused={**array_of(obj(id=STR, reason=STR)),
                                                   "description": "undecodable: they stay; discard them"}))},
            description=acted, body=model_schema(IdsIn), errors=acting)},
        "/api/v1/deadletters/discard": {"post": operation(
            "Remove dead letters for good, without retrying them", "deadletters",
            {"200": json_content(obj(discarded=ids, missing=ids))}, description=acted, body=model_schema(IdsIn), errors=acting)},
    }


def settle_paths() -> dict[str, Any]:
    """Replies and moderation actions left ``unknown`` (interrupted mid platform call), settled once
    someone looked on the platform (console.settle)."""
    why = ("A send whose process was killed during the platform call ends `unknown`: it may or may not have "
           "happened, and nothing does it again blindly. Look on the platform, then say what you found. Only from "
           "`unknown`: a row the platform's late answer (or someone else) settled meanwhile is a 409 whose "
           "`current_status` says its status now, and nothing is changed. Audited, ids only.")
    return {
        "/api/v1/replies/{id}/settle": {"post": operation(
            "Settle a reply left `unknown`: it was posted, or send it again", "replies:write",
            {"200": json_content(ref("SettledReply"))}, params=[ID], body=model_schema(ReplySettleIn),
            description=f"{why} `not_posted` sends it again as a new reply is sent: a public reply to a post "
                        "deleted or erased since is cancelled, one written by an agent or a bot passes the public "
                        "reply checks again (422 with the reason, never overruled by a bot), and one whose post's "
                        "hide is unsettled waits (`message` says so). 409 too while an agent holds the "
                        "conversation. `platform_ref` that names no reply of the platform is a 422. `not_posted` "
                        "on a channel whose bots the operator switched off (`bot_enabled`) is a 423.",
            errors=(400, 401, 403, 404, 409, 415, 422, 423))},
        "/api/v1/moderation-actions/{id}/settle": {"post": operation(
            "Settle a moderation action left `unknown`: it happened, or try it again", "actions:write",
            {"200": json_content(ref("SettledAction"))}, params=[ID], body=model_schema(ActionSettleIn),
            description=f"{why} `happened` records it `done` (an action of this API also takes effect here: the "
                        "post hidden or shown, its author banned). `not_happened` queues it again with its "
                        "interruption count reset: an action of this API is performed at once (its status in "
                        "the answer), the others by the service's next pass, within seconds. Showing a post "
                        "again (approve, unhide) that exposes personal data is a 409.",
            errors=(400, 401, 403, 404, 409, 415, 422))},
    }


def annotate_access(doc: dict[str, Any], router: web.UrlDispatcher) -> dict[str, Any]:
    """Each operation says who may call it, read from the route's own guard (so it cannot drift):
    ``x-roles`` and ``x-token-scope``, and a sentence in its description."""
    import re

    for route in router.routes():
        roles = getattr(route.handler, "roles", None)
        if roles is None or route.resource is None:
            continue
        info = route.resource.get_info()
        path = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", info.get("path") or info.get("formatter") or "")
        op = doc["paths"].get(path, {}).get(route.method.lower())
        if op is None:
            continue
        allowed = sorted({*roles, "admin"}, key=list(ROLES).index)
        scope = getattr(route.handler, "scope", None)
        op["x-roles"], op["x-token-scope"] = allowed, scope
        note = f"Roles: {', '.join(allowed)}." + (f" Token scope: `{scope}`." if scope else "")
        op["description"] = f"{op['description']}\n\n{note}" if op.get("description") else note
    return doc


def add_undocumented(doc: dict[str, Any], router: web.UrlDispatcher) -> dict[str, Any]:
    """Routes other modules add under /api/v1 get a generic entry (their docstring, JSON errors),
    so the description always lists every endpoint a client can call."""
    import re

    for route in router.routes():
        if route.method in ("HEAD", "OPTIONS", "*") or route.resource is None:
            continue
        info = route.resource.get_info()
        raw = info.get("path") or info.get("formatter") or ""
        if not raw.startswith("/api/v1/") or raw == "/api/v1/ingest":
            continue
        path = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", raw)
        ops = doc["paths"].setdefault(path, {})
        method = route.method.lower()
        if method in ops:
            continue
        params = []
        for name, pattern in re.findall(r"\{(\w+)(?::([^}]*))?\}", raw):
            numeric = pattern in ("\\d+", "[0-9]+")
            params.append({"name": name, "in": "path", "required": True,
                           "schema": ID["schema"] if numeric else {"type": "string", "pattern": "^[^/]+$"}})
        summary = ((route.handler.__doc__ or route.handler.__name__).strip().splitlines() or [""])[0]
        ops[method] = operation(summary, None, {"200": json_content(OBJ)}, params=params or None,
                          errors=(400, 401, 403, 404) if params else (400, 401, 403))
    return doc


async def openapi_json(request: web.Request) -> web.Response:
    """Public: the description reveals no data, and clients need it before they authenticate."""
    router = request.app.router
    return web.json_response(annotate_access(add_undocumented(spec(), router), router))


def routes() -> list[web.RouteDef]:
    return [web.get("/api/openapi.json", openapi_json)]
