"""The OpenAPI 3.0 description of the bot API, served at ``/api/openapi.json``.

Request schemas come from the pydantic models the handlers validate with (converted from JSON
Schema to OpenAPI 3.0's dialect), so the description cannot drift from what is enforced.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from console.api.mentions import ACTIONS, ActionIn, ReplyIn
from console.api.templates import NewTemplate, TemplateIn
from console.api.webhooks import SubscriptionIn
from models import ROUTE_OUTCOMES
from models.console import WEBHOOK_EVENTS


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
ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["status", "message"],
    "properties": {"status": {"type": "integer"}, "message": {"type": "string"}}}}}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Bad request", 401: "Authentication required", 403: "Forbidden (role, scope or CSRF)",
            404: "Not found", 409: "Conflict", 415: "Body is not JSON", 422: "Invalid body"}
    return {
        str(c): {"description": text[c], "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        for c in codes}


def _op(summary: str, scope: str | None, responses: dict[str, Any], *, params: list | None = None,
        body: dict[str, Any] | None = None, errors: tuple[int, ...] = (401, 403)) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary + (f" (token scope `{scope}`)" if scope else ""),
                          "responses": {**responses, **_errors(*errors)}}
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


def spec(base_url: str = "/") -> dict[str, Any]:
    mention = {"type": "object", "properties": {
        "id": {"type": "integer"}, "platform": {"type": "string"}, "text": {"type": "string"},
        "triage": {"type": "object", "nullable": True}, "route": {"type": "object", "nullable": True},
        "replies": {"type": "array", "items": OBJ}}}
    template_out = {"type": "object", "properties": {"name": {"type": "string"}, "variants": OBJ,
                                                      "issue_types": {"type": "array", "items": {"type": "string"}}}}
    period = {"type": "string", "enum": ["day", "week"]}
    paths = {
        "/api/v1/mentions": {"get": _op("Routed mentions with their triage, redacted", "mentions:read", {
            "200": _json({"type": "object", "properties": {"mentions": {"type": "array", "items": OBJ}}})},
            params=[_q("outcome", {"type": "string", "enum": list(ROUTE_OUTCOMES)}),
                    _q("platform", {"type": "string", "maxLength": 32}),
                    _q("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                    _q("offset", {"type": "integer", "minimum": 0, "maximum": 1_000_000})],
            errors=(400, 401, 403))},
        "/api/v1/mentions/{id}": {"get": _op("One mention: triage with explanations, route, replies",
                                             "mentions:read", {"200": _json(mention)}, params=[ID],
                                             errors=(401, 403, 404))},
        "/api/v1/mentions/{id}/replies": {"post": _op(
            "Reply to a mention (text, or a template and tone); idempotent with `idempotency_key`. A public "
            "reply is refused (422) when it holds a card number, IBAN, national ID, password or code, the "
            "customer's own e-mail or phone, or answers a matter handled in a private channel",
            "replies:write", {"200": _json(OBJ, "Already created with this key"), "201": _json(OBJ, "Created")},
            params=[ID], body=_model(ReplyIn), errors=(400, 401, 403, 404, 409, 415, 422))},
        "/api/v1/mentions/{id}/actions": {"post": _op(
            f"Act on a mention: {', '.join(ACTIONS)} (`report` holds it for the moderators with `reason` "
            "as the note)", "actions:write", {"200": _json(OBJ)}, params=[ID],
            body=_model(ActionIn), errors=(400, 401, 403, 404, 409, 415, 422))},
        "/api/v1/queue": {"get": _op("The agent queue, in priority and SLA order", "mentions:read", {
            "200": _json({"type": "object", "properties": {"items": {"type": "array", "items": OBJ}}})},
            params=[_q(n, {"type": "string", "maxLength": 80}) for n in ("channel", "issue_type", "sentiment",
                                                                           "sensitivity")])},
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
                                      params=[_q("period", period)], errors=(400, 401, 403))},
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
    return {
        "openapi": "3.0.3",
        "info": {"title": "socialcare bot API", "version": "1",
                 "description": "JSON over HTTPS. Bots authenticate with `Authorization: Bearer <token>` "
                                "(`socialcare users token`); every error is `{\"error\": {\"status\", \"message\"}}`."},
        "servers": [{"url": base_url}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "session": {"type": "apiKey", "in": "cookie", "name": "sc_session"}},
            "schemas": {"Error": ERROR},
        },
    }


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
    return web.json_response(add_undocumented(spec(), request.app.router))


def routes() -> list[web.RouteDef]:
    return [web.get("/api/openapi.json", openapi_json)]
