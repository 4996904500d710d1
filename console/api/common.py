"""What every bot API handler shares: JSON bodies validated by pydantic, JSON errors, safe ids."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from console.paths import parse_int
from console.paths import path_id as _path_id
from listener.validation import unstorable
from listener.webhook import TooDeep, loads

M = TypeVar("M", bound=BaseModel)


def _storable(value: str) -> str:
    """Text a database will take (the check every intake makes: no NUL, no lone surrogates)."""
    if why := unstorable(value):
        raise ValueError(f"the text {why}")
    return value


STORABLE = AfterValidator(_storable)
SafeStr = Annotated[str, STORABLE]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": {"status": status, "message": message, **extra}}, status=status)


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.response = error(status, message, **extra)


async def parse(request: web.Request, model: type[M]) -> M:
    """The request's JSON body as ``model``: 415 when not JSON, 400 when malformed (or nested too
    deeply to parse safely), 422 when invalid."""
    if request.content_type != "application/json":
        raise ApiError(415, "send the body as application/json")
    raw = await request.read()
    try:
        data = loads(raw.decode("utf-8")) if raw else None
    except TooDeep as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(422, "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [{"loc": [str(p) for p in e["loc"]], "message": _message(e)} for e in exc.errors()[:20]]
        said = "; ".join(d["message"] if d["message"].startswith(".".join(d["loc"])) or not d["loc"]
                         else f"{'.'.join(d['loc'])}: {d['message']}" for d in details[:3])
        raise ApiError(422, f"invalid request body: {said}", details=details) from None


def _message(error: Any) -> str:
    """Pydantic's message, without the "Value error, " it puts before our validators' own words."""
    return str(error["msg"]).removeprefix("Value error, ")


def api(handler: Any) -> Any:
    """Turn :class:`ApiError` into its JSON response (keeps handlers linear)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def path_id(request: web.Request, name: str = "id") -> int:
    """:func:`console.paths.path_id`, answered as the API's JSON 404."""
    try:
        return _path_id(request, name)
    except web.HTTPNotFound:
        raise ApiError(404, "not found") from None


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """A whole-number query parameter from ``lo`` (0 or more) to ``hi``; outside, a 400 (JSON under
    /api), never a value quietly moved. Read by :func:`console.paths.parse_int`: ASCII digits only
    (int() would also read "١", " 5" or "+5"), and thousands of them are a 400, not int()'s ValueError."""
    raw = request.query.get(name, "")
    if raw == "" and (name not in request.query or not request.path.startswith("/api/")):
        return default  # absent (a console form's empty field too); a program's `offset=` is a 400
    value = parse_int(raw, lo, hi)
    if value is None:
        raise web.HTTPBadRequest(reason=f"{name} must be an integer from {lo} to {hi}")
    return value


def known_query(request: web.Request, *names: str) -> None:
    """Refuse a query parameter the endpoint does not read (a typo such as ``sentimnet`` would
    otherwise return everything, unfiltered, as if the filter had matched)."""
    unknown = sorted(set(request.query) - set(names))
    if unknown:
        raise web.HTTPBadRequest(reason=f"unknown query parameter {unknown[0]!r}; this endpoint takes "
                                        + (", ".join(names) or "none"))


def query_choice(request: web.Request, name: str, values: tuple[str, ...] | list[str]) -> str | None:
    """A query parameter from a closed vocabulary, or None when absent; anything else is a 400 naming
    the parameter and the values it takes (an unknown value would match nothing, silently)."""
    raw = request.query.get(name, "")
    if raw == "":
        return None
    if raw not in values:
        raise web.HTTPBadRequest(reason=f"{name} must be one of {', '.join(values)}")
    return raw
