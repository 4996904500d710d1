"""The OpenAPI 3.0 description of the bot API, served at ``/api/openapi.json``.

Request schemas come from the pydantic models the handlers validate with (converted from JSON
Schema to OpenAPI 3.0's dialect), so the description cannot drift from what is enforced.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from console.api.deadletters import ID_PATTERN, MAX_SHOWN, PAGE, IdsIn
from console.api.mentions import ACTIONS, IDEMPOTENCY_KEY, NEEDS_REASON, ActionIn, ReplyIn
from console.api.templates import NewTemplate, TemplateIn
from console.api.webhooks import SubscriptionIn
from console.auth import SCOPE_ROLES, roles_for_scope
from models import ROLES, ROUTE_OUTCOMES
from models.console import WEBHOOK_EVENTS
from service.stages.base import STAGES
from triage.protocol import SENSITIVITY_LABELS, SENTIMENT_LABELS


def to_openapi30(schema: Any) -> Any:
    """JSON Schema (pydantic) → OpenAPI 3.0: ``anyOf [X, null]`` becomes ``X`` + ``nullable``."""
    if isinstance(schema, list):
        return [to_openapi30(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: to_openapi30(v) for k, v in schema.items() if k not in ("title",)}
    any_of = out.get("anyOf")
    if isinstance(any_of, list) and {"type": "null"} in any_of:
        rest = [s for s in any_of if s != {"type": "null"}]
        out.pop("anyOf")
        if len(rest) == 1:
            out.update(rest[0])
        else:
            out["anyOf"] = rest
        out["nullable"] = True
    if "const" in out:
        out["enum"] = [out.pop("const")]
    return out


def _model(model: Any) -> dict[str, Any]:
    return to_openapi30(model.model_json_schema())


OBJ = {"type": "object"}
STR, INT, BOOL, NUM = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}, {"type": "number"}
TIME = {"type": "string", "format": "date-time"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _obj(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    """An object whose listed properties are always present (unless ``required`` names fewer)."""
    return {"type": "object", "required": list(props) if required is None else required, "properties": props}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


ERROR = _obj(["error"], error=_obj(
    ["status", "message"], status=INT, message=STR,
    details={**_list(_obj(loc=_list(STR), message=STR)),
             "description": "422 on an invalid body: each problem with its location in the body"},
    lines={**_list(_obj(line=INT, error=STR)), "description": "ingest: each refused line with its number"},
    done={**_list(STR), "description": "dead letters, 503 part-way: the ids retried or discarded before the "
                                        "bus stopped answering"},
    untried={**_list(STR), "description": "dead letters, 503 part-way: the ids not tried (send them again)"}))

TRIAGE_SUMMARY = _obj(sentiment=STR, sensitivity=STR, issue_type=STR, toxicity=STR, spam=STR, pii_exposed=BOOL,
                      priority=NUM, model_version=STR)
SCORE = _obj(label=STR, score=_nullable(NUM), explanation=_list(STR))
TRIAGE = _obj(**{k: v for k, v in TRIAGE_SUMMARY["properties"].items()}, language=_nullable(STR),
              priority_explanation=_list(STR),
              scores=_obj(**{t: SCORE for t in ("sentiment", "sensitivity", "issue_type", "toxicity", "spam")}))
ROUTE = _obj(outcome={"type": "string", "enum": list(ROUTE_OUTCOMES)}, reason=STR, confidence=_nullable(NUM))
_MENTION_FIELDS = dict(
    id=INT, platform=STR, external_id=STR, url=_nullable(STR), conversation_id=_nullable(INT),
    author={**_nullable(STR), "description": "the author's handle"}, created_at=TIME,
    text={**STR, "description": "personal data redacted"}, hidden=BOOL, is_public=BOOL)
MENTION_SUMMARY = _obj(**_MENTION_FIELDS, triage=_nullable(_ref("TriageSummary")), route=_ref("Route"))
REPLY = _obj(id=INT, mention_id=_nullable(INT), conversation_id=_nullable(INT), platform=STR,
             visibility={"type": "string", "enum": ["public", "private"]}, kind=STR,
             text={**STR, "description": "secure links shown as [secure link]"}, template=_nullable(STR),
             status=STR, sent_by=STR, created_at=TIME, sent_at=_nullable(TIME))
MENTION = _obj(**_MENTION_FIELDS, triage=_nullable(_ref("Triage")), route=_nullable(_ref("Route")),
               replies=_list(_ref("Reply")))
ACTION_RESULT = {**_obj(
    ["action", "mention_id"], action={"type": "string", "enum": list(ACTIONS)}, mention_id=INT,
    status={**STR, "description": "hide, unhide, remove, approve, lock, ban: `done` or `failed`; report: the "
                                  "hold's status (`pending`)"},
    moderation_action_id={**INT, "description": "moderation actions and report"},
    repeated={**BOOL, "description": "the same action was already recorded (nothing was done again)"},
    dry_run={**BOOL, "description": "moderation actions: recorded, not carried out (dry-run, or no connector)"},
    error={**STR, "description": "moderation actions: the platform's error when status is `failed`"},
    case_id={**INT, "description": "escalate: the private case"},
    replies={**_list(INT), "description": "escalate: the private replies queued (secure link, notice)"},
    tags={**_list(STR), "description": "tag: the conversation's tags now"},
    conversation_id={**INT, "description": "resolve and tag"}),
    "description": "Always `action` and `mention_id`; the rest depends on the action: hide, unhide, remove, "
                   "approve, lock, ban → status, moderation_action_id, repeated (+ dry_run or error); report → "
                   "status, moderation_action_id, repeated; escalate → case_id, replies; resolve → "
                   "conversation_id; tag → conversation_id, tags."}
QUEUE_ITEM = _obj(conversation_id=INT, mention_id=INT, platform=STR, author=_nullable(STR), text=STR, issue_type=STR,
                  sentiment=STR, sensitivity=STR, priority=NUM, waiting=INT, first_at=TIME, due_at=TIME, overdue=BOOL,
                  answered=BOOL, claimed_by=_nullable(STR), claimed_at=_nullable(TIME), tags=_list(STR))
CASE = _obj(id=INT, status={"type": "string", "enum": ["open", "verified", "resolved"]}, category=STR,
            identity_pending=BOOL, conversation_id=_nullable(INT), opened_by_mention_id=_nullable(INT),
            mention_ids=_list(INT), assigned_to={**_nullable(STR), "description": "the agent's user name"},
            created_at=TIME, first_response_due=_nullable(TIME), resolution_due=_nullable(TIME),
            first_response_at=_nullable(TIME), resolved_at=_nullable(TIME),
            messages=_list(_obj(id=INT, sender={"type": "string", "enum": ["customer", "agent", "system"]},
                                mention_id=_nullable(INT), at=TIME,
                                body={**STR, "description": "redacted: no secure links, codes or personal data"})))
INGEST_LINE = {**_obj(["platform", "external_id", "text", "created_at"], platform=STR, external_id=STR, text=STR,
                      created_at=TIME, author_id=_nullable(STR), author_handle=_nullable(STR),
                      author_name=_nullable(STR), conversation_id=_nullable(STR), in_reply_to=_nullable(STR),
                      url=_nullable(STR), lang=_nullable(STR), is_public=BOOL, channel=_nullable(STR)),
               "description": "one mention (NormalizedMention fields; others are ignored)"}
DEAD_LETTER = _obj(
    ["id", "entry_id", "topic", "key", "attempts", "reason", "failed_at"],
    id={**STR, "pattern": ID_PATTERN}, entry_id={**STR, "description": "the message's id on its own stream, the "
                                                                         "one the worker's log names"},
    topic={**STR, "description": "the stage that failed it"}, key={**STR, "description": "the message's key"},
    attempts=INT, reason={**STR, "description": "the last failure, personal data redacted"}, failed_at=TIME,
    undecodable={**STR, "description": "only for an entry that cannot be read (it cannot be retried): why"})
DEAD_LETTER_SHOWN = {**DEAD_LETTER, "required": [*DEAD_LETTER["required"], "payload"], "properties": {
    **DEAD_LETTER["properties"], "payload": {**OBJ, "description": "as published, redacted (undecodable: raw fields)"}}}
SCHEMAS = {"Error": ERROR, "TriageSummary": TRIAGE_SUMMARY, "Triage": TRIAGE, "Route": ROUTE,
           "MentionSummary": MENTION_SUMMARY, "Mention": MENTION, "Reply": REPLY, "ActionResult": ACTION_RESULT,
           "QueueItem": QUEUE_ITEM, "Case": CASE, "IngestLine": INGEST_LINE,
           "DeadLetter": DEAD_LETTER, "DeadLetterShown": DEAD_LETTER_SHOWN}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Bad request (a parameter outside its range or vocabulary, or one the endpoint does not take)",
            401: "Authentication required", 403: "Forbidden (role, scope or CSRF)", 404: "Not found",
            409: "Conflict", 410: "Gone: the post was erased on a privacy request (nothing was done on the platform)",
            415: "Body is not JSON", 422: "Invalid body (`details` names each problem)",
            503: "The message bus does not answer (`Retry-After` says when to try again)"}
    return {str(c): _json(_ref("Error"), text[c]) for c in codes}


def _op(summary: str, scope: str | None, responses: dict[str, Any], *, params: list | None = None,
        body: dict[str, Any] | None = None, errors: tuple[int, ...] = (401, 403),
        description: str | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary + (f" (token scope `{scope}`)" if scope else ""),
                          "responses": {**responses, **_errors(*errors)}}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _q(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1,
                                                                "maximum": 4611686018427387903}}
NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,99}$"}}
IDEMPOTENCY_HEADER = {"name": "Idempotency-Key", "in": "header", "required": False,
                      "schema": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": IDEMPOTENCY_KEY},
                      "description": "As `idempotency_key` in the body (which wins when both are given)."}


def action_body() -> dict[str, Any]:
    """ActionIn as two variants: remove, ban and report need a non-empty ``reason`` (a 422
    otherwise), the other actions take it optionally."""
    base = _model(ActionIn)
    others = [a for a in ACTIONS if a not in NEEDS_REASON]
    props = base["properties"]
    with_reason = {**base, "required": ["action", "reason"], "properties": {
        **props, "action": {"type": "string", "enum": list(NEEDS_REASON)},
        "reason": {k: v for k, v in props["reason"].items() if k != "default"} | {"minLength": 1, "pattern": r"\S"}}}
    without = {**base, "properties": {**props, "action": {"type": "string", "enum": others}}}
    return {"oneOf": [with_reason, without]}


def spec(base_url: str = "/") -> dict[str, Any]:
    template_out = {"type": "object", "properties": {"name": {"type": "string"}, "variants": OBJ,
                                                      "issue_types": {"type": "array", "items": {"type": "string"}}}}
    period = {"type": "string", "enum": ["day", "week"]}
    day = {"type": "string", "format": "date"}
    paths = {
        "/api/v1/mentions": {"get": _op(
            "Routed mentions with their triage, redacted", "mentions:read", {
                "200": _json(_obj(["mentions", "limit", "offset"], mentions=_list(_ref("MentionSummary")),
                                  limit=INT, offset=INT, since_id=INT,
                                  next_since_id={**INT, "description": "with since_id: pass it back as since_id "
                                                                       "on the next poll"}))},
            description="Order: priority (highest first), then newest, then highest id — a total order, so "
                        "limit/offset pages neither repeat nor skip a mention while nothing changes. For polling, "
                        "give `since_id` instead of `offset`: mentions with a greater id, in ascending id order; a "
                        "page stops before a mention ingested in the last 15 minutes that is not routed yet, so a "
                        "cursor never passes over one.",
            params=[_q("outcome", {"type": "string", "enum": list(ROUTE_OUTCOMES)}),
                    _q("platform", {"type": "string", "maxLength": 32}, "any platform name; an unknown one "
                                                                        "matches nothing"),
                    _q("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}),
                    _q("offset", {"type": "integer", "minimum": 0, "maximum": 1_000_000, "default": 0}),
                    _q("since_id", {"type": "integer", "minimum": 0, "maximum": 4611686018427387903},
                       "only mentions with a greater id, in ascending id order (not with offset)")],
            errors=(400, 401, 403))},
        "/api/v1/mentions/{id}": {"get": _op("One mention: triage with explanations, route, replies",
                                             "mentions:read", {"200": _json(_ref("Mention"))}, params=[ID],
                                             errors=(401, 403, 404))},
        "/api/v1/mentions/{id}/replies": {"post": _op(
            "Reply to a mention (text, or a template and tone); idempotent with `idempotency_key` or the "
            "`Idempotency-Key` header. A public reply is refused (422) when it holds a card number, IBAN, national "
            "ID, password or code, the customer's own e-mail or phone, or answers a matter handled in a private "
            "channel", "replies:write", {
                "200": _json(_obj(reply=_ref("Reply"), created={"type": "boolean", "enum": [False]}),
                             "Already created with this key"),
                "201": _json(_obj(reply=_ref("Reply"), created={"type": "boolean", "enum": [True]}), "Created")},
            params=[ID, IDEMPOTENCY_HEADER], body=_model(ReplyIn), errors=(400, 401, 403, 404, 409, 415, 422))},
        "/api/v1/mentions/{id}/actions": {"post": _op(
            f"Act on a mention: {', '.join(ACTIONS)} (`report` holds it for the moderators with `reason` "
            f"as the note; {', '.join(NEEDS_REASON)} need a reason)", "actions:write",
            {"200": _json(_ref("ActionResult"))}, params=[ID],
            description="hide, unhide, remove, approve, lock and ban on a post erased on a privacy request, "
                        "before or while the action is carried out, answer 410: the action is `cancelled`, "
                        "never sent to the platform.",
            body=action_body(), errors=(400, 401, 403, 404, 409, 410, 415, 422))},
        "/api/v1/queue": {"get": _op(
            "The agent queue, in priority and SLA order", "mentions:read", {
                "200": _json(_obj(items=_list(_ref("QueueItem")), limit=INT, offset=INT,
                                  has_more={**BOOL, "description": "the queue goes on after this page"}))},
            description="Order: unanswered first, then priority band, then the earliest first-response "
                        "deadline. Pages with limit/offset; `has_more` says whether another page follows.",
            params=[_q("channel", {"type": "string", "maxLength": 80}, "a platform name"),
                    _q("issue_type", {"type": "string", "maxLength": 80}, "an issue type (the taxonomy is "
                                                                          "configurable: an unknown one matches "
                                                                          "nothing)"),
                    _q("sentiment", {"type": "string", "enum": list(SENTIMENT_LABELS)}),
                    _q("sensitivity", {"type": "string", "enum": list(SENSITIVITY_LABELS)}),
                    _q("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 300}),
                    _q("offset", {"type": "integer", "minimum": 0, "maximum": 5000, "default": 0})],
            errors=(400, 401, 403))},
        "/api/v1/cases/{id}": {"get": _op(
            "One private case: status, category, timestamps, conversation and mention ids, assigned agent and "
            "its messages, redacted (no secure links, codes or personal data; no customer record fields); "
            "every read is audited", "cases:read", {"200": _json(_ref("Case"))}, params=[ID],
            errors=(400, 401, 403, 404))},
        "/api/v1/ingest": {"post": {
            "summary": "Mentions in, one JSON object per line (token scope `ingest`, on an admin's token; or the "
                       "running service's local ingest token, as `socialcare replay` uses)",
            "description": "Every line is checked as ingest will store it; one bad line refuses the whole body "
                           "(400, `lines` names each with its number) and nothing is queued.\n\nRoles: admin. "
                           "Token scope: `ingest`.",
            "x-roles": ["admin"], "x-token-scope": "ingest",  # checked in the handler (it also takes the local token)
            "requestBody": {"required": True, "content": {"application/x-ndjson": {
                "schema": {**_list(_ref("IngestLine")), "maxItems": 10_000}}}},
            "responses": {"202": _json(_obj(accepted=INT), "Queued for ingest"),
                          **_errors(400, 401, 403)}}},
        "/api/v1/templates": {
            "get": _op("List answer templates", "templates:read", {
                "200": _json({"type": "object", "properties": {"templates": {"type": "array", "items": template_out}}})}),
            "post": _op("Create a template", "templates:write", {"201": _json(template_out, "Created")},
                        body=_model(NewTemplate), errors=(400, 401, 403, 409, 415, 422))},
        "/api/v1/templates/{name}": {
            "get": _op("One template", "templates:read", {"200": _json(template_out)}, params=[NAME],
                       errors=(401, 403, 404)),
            "put": _op("Replace a template", "templates:write", {"200": _json(template_out)}, params=[NAME],
                       body=_model(TemplateIn), errors=(400, 401, 403, 404, 415, 422)),
            "delete": _op("Delete a template", "templates:write", {"204": {"description": "Deleted"}},
                          params=[NAME], errors=(401, 403, 404))},
        "/api/v1/webhooks": {
            "get": _op("Outgoing webhook subscriptions (admin)", "webhooks", {"200": _json(OBJ)}),
            "post": _op(f"Subscribe to events ({', '.join(WEBHOOK_EVENTS)}); bodies are signed: header "
                        "`X-Socialcare-Signature: t=<unix>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">`",
                        "webhooks", {"201": _json(OBJ, "Created; the secret is shown once")},
                        body=_model(SubscriptionIn), errors=(400, 401, 403, 415, 422))},
        "/api/v1/webhooks/{id}": {"delete": _op("Unsubscribe", "webhooks", {"204": {"description": "Deleted"}},
                                                params=[ID], errors=(401, 403, 404))},
        "/api/v1/webhooks/{id}/deliveries": {"get": _op(
            "Recent deliveries with their attempts", "webhooks", {"200": _json(OBJ)},
            params=[ID, _q("limit", {"type": "integer", "minimum": 1, "maximum": 500})], errors=(400, 401, 403, 404))},
        "/api/v1/metrics/summary": {"get": _op(
            "Service measures: deflected, cases created/solved, escalated, first-contact resolution, service "
            "level, median and p90 first response, repeat contacts", "metrics", {"200": _json(OBJ)},
            params=[_q("period", {"type": "string", "enum": ["day", "week", "month"]}),
                    _q("start", {"type": "string", "format": "date-time"}),
                    _q("end", {"type": "string", "format": "date-time"})], errors=(400, 401, 403))},
        "/api/v1/digest": {"get": _op("The sentiment digest's numbers", "digest:read", {"200": _json(OBJ)},
                                      params=[_q("period", period),
                                              _q("end", day, "the period runs through this day (UTC), up to the "
                                                             "midnight after it; default: up to now")],
                                      errors=(400, 401, 403))},
        "/api/v1/connectors": {"get": _op(
            "Each platform connector: state (`running`, `backing_off`, `stopped`; `starting`, or `unknown` "
            "without a report from the listener process), last error, what it listens to, last poll time",
            "connectors:read", {"200": _json({"type": "object", "properties": {"connectors": {
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
    ids, acting = _list({**STR, "pattern": ID_PATTERN}), (400, 401, 403, 415, 422, 503)
    acted = ("Each id once, in one list: done, or `missing` (retried or discarded already). A bus that stops "
             "answering part-way is a 503 whose `done` and `untried` say how far it got. Audited, ids only.")
    listing = _obj(deadletters=_list(_ref("DeadLetter")), total={**INT, "description": "how many match `topic`"},
                   more={**INT, "description": "how many of those are past `limit`"}, limit=INT,
                   counts={**OBJ, "additionalProperties": INT, "description": "dead letters per topic"},
                   bus={"type": "string", "enum": ["inprocess", "redis"], "description": "the web process's "
                        "bus (in-process dead letters are lost when it stops)"})
    return {
        "/api/v1/deadletters": {"get": _op(
            "Dead letters (messages that failed their stage on every delivery), oldest first, no payloads",
            "deadletters", {"200": _json(listing)}, errors=(400, 401, 403, 503),
            params=[_q("topic", {"type": "string", "enum": list(STAGES)}, "only this stage's dead letters"),
                    _q("limit", {"type": "integer", "minimum": 1, "maximum": MAX_SHOWN, "default": PAGE})])},
        "/api/v1/deadletters/{id}": {"get": _op(
            "One dead letter with its payload, personal data redacted; every view is audited", "deadletters",
            {"200": _json(_ref("DeadLetterShown"))}, errors=(400, 401, 403, 404, 503),
            params=[{"name": "id", "in": "path", "required": True, "schema": {**STR, "pattern": ID_PATTERN}}])},
        "/api/v1/deadletters/retry": {"post": _op(
            "Put dead letters back on their topic with a fresh attempt count", "deadletters", {"200": _json(_obj(
                retried=ids, missing=ids, refused={**_list(_obj(id=STR, reason=STR)),
                                                   "description": "undecodable: they stay; discard them"}))},
            description=acted, body=_model(IdsIn), errors=acting)},
        "/api/v1/deadletters/discard": {"post": _op(
            "Remove dead letters for good, without retrying them", "deadletters",
            {"200": _json(_obj(discarded=ids, missing=ids))}, description=acted, body=_model(IdsIn), errors=acting)},
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
        ops[method] = _op(summary, None, {"200": _json(OBJ)}, params=params or None,
                          errors=(400, 401, 403, 404) if params else (400, 401, 403))
    return doc


async def openapi_json(request: web.Request) -> web.Response:
    """Public: the description reveals no data, and clients need it before they authenticate."""
    router = request.app.router
    return web.json_response(annotate_access(add_undocumented(spec(), router), router))


def routes() -> list[web.RouteDef]:
    return [web.get("/api/openapi.json", openapi_json)]
