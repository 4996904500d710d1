"""JSON text for the database's JSON columns and the bus's payloads: orjson, read back exactly as the
standard library's ``json`` would.

Encoding and decoding the stored score documents, decisions and payloads was a fifth of the
pipeline's time with ``json``; orjson does it several times faster. Its text differs only in layout
(compact, UTF-8 rather than ``\\u`` escapes), which no reader sees. Where orjson would read or write
a value differently, the ``json`` module does the work instead, so every value comes back as before:

* orjson writes NaN and infinities as ``null`` (``json`` writes ``NaN``, read back as NaN);
* orjson refuses integers beyond 64 bits, lone surrogates, non-string keys, subclasses of the
  built-in types, datetimes and dataclasses (``json`` writes some and refuses the others, as ever);
* orjson reads an integer beyond 64 bits as a float: a number of 19 digits or more is left to
  ``json`` (digits inside strings, as in a tweet's id, are not a number and cost nothing);
* orjson refuses ``NaN``, ``Infinity``, overflowing numbers and lone surrogates: ``json`` reads them.

One difference remains: ``json`` refuses UUIDs and plain (not int or str) Enum members, orjson
writes them as their string and value; none is ever stored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson

_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
# a number token of 19 digits or more (after a separator, not a quote): maybe an integer beyond 64
# bits (-2**63 has 19), which orjson reads as a float
_LONG_NUMBER = re.compile(rb"(?:^|[:,\[\s])-?\d{19}")


def dumps(value: Any, fallback: Callable[[Any], str] = json.dumps) -> str:
    """``value`` as JSON text; ``fallback`` (``json.dumps`` by default) writes what orjson would
    write differently (see above)."""
    try:
        data = orjson.dumps(value, option=_OPTIONS)
    except TypeError:
        return fallback(value)
    if b"null" in data and not _finite(value):
        return fallback(value)
    return data.decode()


def loads(text: str | bytes) -> Any:
    """The value of JSON ``text``, as ``json.loads`` reads it."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if _LONG_NUMBER.search(data):
        return json.loads(text)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _finite(value: Any) -> bool:
    """No NaN or infinity anywhere in ``value`` (what orjson would write as ``null``)."""
    stack = [value]
    while stack:
        v = stack.pop()
        kind = type(v)
        if kind is float:
            if v - v != 0.0:
                return False
        elif kind is dict:
            stack.extend(v.values())
        elif kind is list or kind is tuple:
            stack.extend(v)
    return True
