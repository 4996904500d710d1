"""The building blocks of the bot API's OpenAPI 3.0 description (:mod:`console.api.openapi`):
its component schemas, error responses and parameters.

Request schemas come from the pydantic models the handlers validate with (converted from JSON
Schema to OpenAPI 3.0's dialect), so the description cannot drift from what is enforced.
"""

from __future__ import annotations

from typing import Any

from console.api.actions import ACTIONS, NEEDS_REASON, ActionIn
from console.api.deadletters import ID_PATTERN
from console.api.mentions import IDEMPOTENCY_KEY
from models import ROUTE_OUTCOMES


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


def model_schema(model: Any) -> dict[str, Any]:
    return to_openapi30(model.model_json_schema())


OBJ = {"type": "object"}
STR, INT, BOOL, NUM = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}, {"type": "number"}
TIME = {"type": "string", "format": "date-time"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def obj(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    """An object whose listed properties are always present (unless ``required`` names fewer)."""
    return {"type": "object", "required": list(props) if required is None else required, "properties": props}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def array_of(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


ERROR = obj(["error"], error=obj(
    ["status", "message"], status=INT, message=STR,
    details={**array_of(obj(loc=array_of(STR), message=STR)),
             "description": "422 on an invalid body: each problem with its location in the body"},
    lines={**array_of(obj(line=INT, error=STR)), "description": "ingest: each refused line with its number"},
    done={**array_of(STR), "description": "dead letters, 503 part-way: the ids retried or discarded before the "
                                        "bus stopped answering"},
    untried={**array_of(STR), "description": "dead letters, 503 part-way: the ids not tried (send them again)"},
    current_status={**STR, "description": "settling, 409: the row's status now (no longer `unknown`)"},
    retry_after={**INT, "minimum": 1, "description": "429: seconds until the request may succeed (as the "
                                                     "`Retry-After` header)"}))

TRIAGE_SUMMARY = obj(sentiment=STR, sensitivity=STR, issue_type=STR, toxicity=STR, spam=STR, pii_exposed=BOOL,
                      priority=NUM, model_version=STR)
SCORE = obj(label=STR, score=nullable(NUM), explanation=array_of(STR))
TRIAGE = obj(**{k: v for k, v in TRIAGE_SUMMARY["properties"].items()}, language=nullable(STR),
              priority_explanation=array_of(STR),
              scores=obj(**{t: SCORE for t in ("sentiment", "sensitivity", "issue_type", "toxicity", "spam")}))
ROUTE = obj(outcome={"type": "string", "enum": list(ROUTE_OUTCOMES)}, reason=STR, confidence=nullable(NUM))
_MENTION_FIELDS = dict(
    id=INT, platform=STR, external_id=STR, url=nullable(STR), conversation_id=nullable(INT),
    author={**nullable(STR), "description": "the author's handle"}, created_at=TIME,
    text={**STR, "description": "personal data redacted"},
    hidden={**BOOL, "description": "hidden by moderation (a post deleted on its platform is hidden too)"},
    deleted={**BOOL, "description": "gone from its platform: deleted there by its author, a platform moderator "
                                    "or with its whole thread, or erased here on a privacy request (its text is "
                                    "then `[erased]`); false again if the platform shows it again. It is not in "
                                    "the queue, and a public reply to it is refused (422): reply privately"},
    is_public=BOOL)
MENTION_SUMMARY = obj(**_MENTION_FIELDS, triage=nullable(ref("TriageSummary")), route=ref("Route"))
REPLY_STATUSES = {
    "pending": "written, not sent yet; with an `error` that begins \"held back: \" it waits until a hide or "
               "removal of its post is settled, and goes then",
    "queued": "waiting for a slot of its channel's pace (incident status replies)",
    "sending": "the platform call is under way",
    "sent": "posted (`sent_at`)",
    "failed": "the platform refused it (`error` says why): nothing was posted; its idempotency key may be "
              "used again for a new attempt",
    "dry_run": "recorded, not sent: the service or the channel's bots are in dry run, or no connector serves "
               "the platform",
    "unknown": "interrupted during the platform call: it may or may not be posted (POST "
               "/api/v1/replies/{id}/settle once you have looked)",
    "cancelled": "not sent: its post was erased here or deleted on its platform (`error` says which)",
    "deleted": "a bot reply taken back (deleted on the platform)",
    "superseded": "an incident status reply made pointless by the incident's fix: not sent",
    "suggested": "an automatic answer the bot's gates held back, offered to an agent: not sent"}
REPLY = obj(id=INT, mention_id=nullable(INT), conversation_id=nullable(INT), platform=STR,
             visibility={"type": "string", "enum": ["public", "private"]}, kind=STR,
             text={**STR, "description": "secure links shown as [secure link]"}, template=nullable(STR),
             status={"type": "string", "enum": list(REPLY_STATUSES), "description": "A new reply (201) is "
                     "`sent`, `failed`, `dry_run`, `pending` (held back), `cancelled` or `unknown`. " + "; ".join(
                         f"`{k}`: {v}" for k, v in REPLY_STATUSES.items()) + "."},
             error={**nullable(STR), "description": "why a reply failed, waits (held back) or was cancelled"},
             sent_by=STR, created_at=TIME, sent_at=nullable(TIME))
MENTION = obj(**_MENTION_FIELDS, triage=nullable(ref("Triage")), route=nullable(ref("Route")),
               replies={**array_of(ref("Reply")), "description": "the public ones only, for a token of a user "
                                                                 "who is not an agent (or admin)"})
ACTION_RESULT = {**obj(
    ["action", "mention_id"], action={"type": "string", "enum": list(ACTIONS)}, mention_id=INT,
    status={**STR, "description": "hide, unhide, remove, approve, lock, ban: `done` or `failed`; report: the "
                                  "hold's status (`pending`)"},
    moderation_action_id={**INT, "description": "moderation actions and report"},
    repeated={**BOOL, "description": "the same action was already recorded (nothing was done again)"},
    dry_run={**BOOL, "description": "moderation actions: recorded, not carried out (dry-run, or no connector)"},
    error={**STR, "description": "moderation actions: the platform's error when status is `failed`"},
    case_id={**INT, "description": "escalate: the private case"},
    replies={**array_of(INT), "description": "escalate: the private replies queued (secure link, notice)"},
    tags={**array_of(STR), "description": "tag: the conversation's tags now"},
    conversation_id={**INT, "description": "resolve and tag"}),
    "description": "Always `action` and `mention_id`; the rest depends on the action: hide, unhide, remove, "
                   "approve, lock, ban → status, moderation_action_id, repeated (+ dry_run or error); report → "
                   "status, moderation_action_id, repeated; escalate → case_id, replies; resolve → "
                   "conversation_id; tag → conversation_id, tags."}
MODERATION_ACTION = obj(
    id=INT, mention_id=INT, action={**STR, "description": "hide, remove, filter, approve, unhide, lock, ban, ..."},
    rule={**nullable(STR), "description": "the rule behind it (`api`: this API's), or null for a moderator's"},
    actor=STR, status={**STR, "description": "`queued`, `sending`, `done`, `failed`, `dry_run`, `unknown`, "
                                             "`cancelled`, ..."},
    created_at=TIME, interrupted={**INT, "description": "how many times its executor was interrupted mid-call "
                                                        "since it was last tried by a person (0 after one)"})
SETTLED_REPLY = obj(reply=ref("Reply"), message={**STR, "description": "what was done, in words (sent again: "
                                                                       "sent, held back and why, refused...)"})
SETTLED_ACTION = obj(moderation_action=ref("ModerationAction"), message={**STR, "description": "what was done, "
                                                                                               "in words"})
QUEUE_ITEM = obj(conversation_id=INT, mention_id=INT, platform=STR, author=nullable(STR), text=STR, issue_type=STR,
                  sentiment=STR, sensitivity=STR, priority=NUM, waiting=INT, first_at=TIME, due_at=TIME, overdue=BOOL,
                  answered=BOOL, claimed_by=nullable(STR), claimed_at=nullable(TIME), tags=array_of(STR))
CASE = obj(id=INT, status={"type": "string", "enum": ["open", "verified", "resolved"]}, category=STR,
            identity_pending=BOOL, conversation_id=nullable(INT), opened_by_mention_id=nullable(INT),
            mention_ids=array_of(INT), assigned_to={**nullable(STR), "description": "the agent's user name"},
            created_at=TIME, first_response_due=nullable(TIME), resolution_due=nullable(TIME),
            first_response_at=nullable(TIME), resolved_at=nullable(TIME),
            messages=array_of(obj(id=INT, sender={"type": "string", "enum": ["customer", "agent", "system"]},
                                mention_id=nullable(INT), at=TIME,
                                body={**STR, "description": "redacted: no secure links, codes or personal data"})))
INGEST_LINE = {**obj(["platform", "external_id", "text", "created_at"], platform=STR, external_id=STR, text=STR,
                      created_at=TIME, author_id=nullable(STR), author_handle=nullable(STR),
                      author_name=nullable(STR), conversation_id=nullable(STR), in_reply_to=nullable(STR),
                      url=nullable(STR), lang=nullable(STR), is_public=BOOL, channel=nullable(STR)),
               "description": "one mention (NormalizedMention fields; others are ignored)"}
DEAD_LETTER = obj(
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
           "ModerationAction": MODERATION_ACTION, "SettledReply": SETTLED_REPLY, "SettledAction": SETTLED_ACTION,
           "QueueItem": QUEUE_ITEM, "Case": CASE, "IngestLine": INGEST_LINE,
           "DeadLetter": DEAD_LETTER, "DeadLetterShown": DEAD_LETTER_SHOWN}


def json_content(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_responses(*codes: int) -> dict[str, Any]:
    text = {400: "Bad request (a parameter outside its range or vocabulary, or one the endpoint does not take)",
            401: "Authentication required", 403: "Forbidden (role, scope or CSRF)", 404: "Not found",
            409: "Conflict", 410: "Gone: the post was erased on a privacy request (nothing was done on the platform)",
            415: "Body is not JSON", 422: "Invalid body (`details` names each problem)",
            423: "The operator switched bot replies off on the channel (`bot_enabled`): nothing was sent",
            503: "The message bus does not answer (`Retry-After` says when to try again)"}
    return {str(c): json_content(ref("Error"), text[c]) for c in codes}


def operation(summary: str, scope: str | None, responses: dict[str, Any], *, params: list | None = None,
        body: dict[str, Any] | None = None, errors: tuple[int, ...] = (401, 403),
        description: str | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary + (f" (token scope `{scope}`)" if scope else ""),
                          "responses": {**responses, **error_responses(*errors)}}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def query_param(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
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
    base = model_schema(ActionIn)
    others = [a for a in ACTIONS if a not in NEEDS_REASON]
    props = base["properties"]
    with_reason = {**base, "required": ["action", "reason"], "properties": {
        **props, "action": {"type": "string", "enum": list(NEEDS_REASON)},
        "reason": {k: v for k, v in props["reason"].items() if k != "default"} | {"minLength": 1, "pattern": r"\S"}}}
    without = {**base, "properties": {**props, "action": {"type": "string", "enum": others}}}
    return {"oneOf": [with_reason, without]}
