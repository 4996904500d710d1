"""Which stored platform payloads name a person's account: the keys where payloads name other
accounts (:data:`OTHER_ACCOUNTS`, dropped from others' posts by an erasure:
:func:`service.privacy.drop_other_accounts`; never exported: :mod:`service.privacy_export`), Python's
exact check (:func:`account_matcher`) and the database's narrowing to candidates
(:func:`account_filter`: a JSON path per key on PostgreSQL, ``json_tree`` on SQLite), so an
erasure's scan of other people's posts (:func:`service.erasure._naming`) reads each payload once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy import (
    Text,
    and_,
    bindparam,
    case,
    cast,
    exists,
    false,
    func,
    literal_column,
    not_,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONPATH

# keys, at any depth of a platform payload, that name or describe other accounts: never exported,
# dropped from others' posts by an erasure (after ingest nothing reads them: see
# service.privacy.drop_other_accounts)
OTHER_ACCOUNTS = frozenset({
    "in_reply_to_user_id", "in_reply_to_screen_name",  # X: the account replied to
    "mentions", "includes", "users",  # X: entities' @-mentions, the expansions' profiles
    "reply_to_user", "reply_to_user_id", "mentioned_users",  # Discourse: the account replied to, @-mentioned
    "participants",
})

# a key whose values are account ids ("id", "user_id", "in_reply_to_user_id", "id_str", "user_ids"):
# there a number equal to an id names the account (elsewhere a number is an offset or a count)
ID_KEY = re.compile(r"(?:^|_)ids?(?:_str)?$")


def names_account(raw: Any, handles: Collection[str], ids: Collection[str]) -> bool:
    """Does this platform payload name one of these accounts? See :func:`account_matcher`."""
    return account_matcher(handles, ids)(raw)


def account_matcher(handles: Collection[str], ids: Collection[str]) -> Callable[[Any], bool]:
    """Whether a platform payload names one of these accounts (``handles`` as
    :func:`service.tombstones.handle_key`, user ``ids``) where payloads name accounts, in an entry of
    :data:`OTHER_ACCOUNTS` (at any depth: what :func:`service.privacy.drop_other_accounts` drops). There a value (or a
    key) that is one of the ids, or one of the handles (any case, with or without "@"), names it; so
    does a number equal to an id under an id's key (:data:`ID_KEY`), and a handle or id as a whole
    path segment, @-mention or query value in a longer string ("/user_avatar/forum/marial/{size}/1.png").
    Never a part of a value: "111" is not named by "1111", "51110" or "order 111"."""
    handles = {h.lower() for h in handles if h}
    ids = {i.lower() for i in ids if i}
    if not (handles or ids):
        return lambda raw: False
    values = sorted(handles | ids, key=len, reverse=True)
    token = re.compile(r"(?<=[@/=])(?:%s)(?![\w-]|\.\w)" % "|".join(map(re.escape, values)), re.IGNORECASE)

    def named(text: str) -> bool:
        folded = text.strip().lower()
        return folded in ids or folded.lstrip("@") in handles or token.search(text) is not None

    def walk(value: Any, key: Any, inside: bool) -> bool:
        if isinstance(value, dict):
            return any((inside and isinstance(k, str) and named(k))
                       or walk(v, k, inside or k in OTHER_ACCOUNTS) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return any(walk(v, key, inside) for v in value)
        if not inside:
            return False
        if isinstance(value, str):
            return named(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return isinstance(key, str) and ID_KEY.search(key.lower()) is not None and str(value) in ids
        return False

    return lambda raw: walk(raw, None, False)


# what str.strip() removes around a whole value (every such character lies below U+3001)
_SPACES = "".join(c for c in map(chr, range(0x3001)) if c.isspace())
_INT64 = range(-2**63, 2**63)


def account_filter(dialect: str, raw: Any, handles: Collection[str], ids: Collection[str]) -> Any:
    """SQL on the payload column ``raw``: true for every payload :func:`account_matcher` says names one
    of these accounts, and for few others, so the database reads each payload once and Python's exact
    check sees only the candidates. Looked for only where :data:`OTHER_ACCOUNTS` keys lead, as there: a
    string (or a key) that is the value padded with spaces or "@", or holds it after "@", "/" or "="
    with no letter, digit or "_" after it; a number equal to an id (under any key: Python checks the
    key). Cases fold as ASCII; a character beyond ASCII in a value matches any one character. On
    PostgreSQL a JSON path per key (``jsonb_path_exists``); on SQLite ``json_tree``, after a coarse
    LIKE on the payload's text (a payload that is not strict JSON, a NaN in it, stays a candidate)."""
    values = sorted({v.lower() for v in (*handles, *ids) if v})
    numbers = sorted({int(i) for i in ids if i and re.fullmatch(r"-?[0-9]+", i) and str(int(i)) == i})
    if not values:
        return false()
    if dialect == "postgresql":
        return or_(*(func.jsonb_path_exists(raw, bindparam(None, path, type_=JSONPATH))
                     for path in _json_paths(values, numbers)))
    return _json_tree_filter(raw, values, numbers)


def _json_paths(values: list[str], numbers: list[int]) -> list[str]:
    """PostgreSQL: one lax JSON path per key of :data:`OTHER_ACCOUNTS` (``$.**."key".**``: every value
    at any depth under that key, at any depth), filtered as :func:`account_filter` says."""
    alt = "|".join("".join(c if c.isascii() and c.isalnum() else "\\" + c if c.isascii() else "." for c in v)
                   for v in values)
    pattern = json.dumps(f"^[{_SPACES}@]*({alt})[{_SPACES}]*$|[@/=]({alt})([^a-z0-9_]|$)")
    # flag "s" as well: without it a JSON path's regex never matches a newline, even with [^a-z0-9_]
    named = [f'(@.type() == "string" && @ like_regex {pattern} flag "is")',
             f'(@.type() == "object" && exists (@.keyvalue() ? (@.key like_regex {pattern} flag "is")))']
    if numbers:
        equal = " || ".join(f"@ == {n}" for n in numbers)
        named.append(f'(@.type() == "number" && ({equal}))')
    return [f"lax $.**.{json.dumps(key)}.** ? ({' || '.join(named)})" for key in sorted(OTHER_ACCOUNTS)]


def _json_tree_filter(raw: Any, values: list[str], numbers: list[int]) -> Any:
    """SQLite: ``json_tree`` finds the :data:`OTHER_ACCOUNTS` entries, a second one walks each entry's
    value; behind a LIKE on the payload's text (as stored or JSON-escaped) that skips most payloads
    cheaply unless a value is very short."""
    def glob(v: str) -> str:  # GLOB is case-sensitive: the text is lowered, ASCII only
        return "".join(f"[{c}]" if c in "*?[" else c if c.isascii() else "?" for c in v)

    def like(escaped: str) -> str:  # as the JSON text holds it: \uXXXX of any case, or the character itself
        parts = re.split(r"(\\u[0-9a-f]{4})", escaped)
        return "%" + "".join("\\\\u____" if i % 2 else "".join(
            "\\" + c if c in "%_\\" else c if c.isascii() else "_" for c in part)
            for i, part in enumerate(parts)) + "%"

    def text_names(x: Any) -> Any:
        low, either = func.lower(x), []
        for v in values:
            whole = func.rtrim(func.ltrim(low, _SPACES + "@"), _SPACES).op("GLOB")(glob(v.lstrip("@")))
            after = or_(low.op("GLOB")(f"*[@/=]{glob(v)}"), low.op("GLOB")(f"*[@/=]{glob(v)}[^a-z0-9_]*"))
            if v.isascii():  # cheap first: the lowered text holds the value (after "@", "/" or "=")
                whole = and_(func.instr(low, v) > 0, whole)
                after = and_(or_(*(func.instr(low, c + v) > 0 for c in "@/=")), after)
            either += [whole, after]
        return or_(*either)

    def node_names(node: Any) -> Any:
        named = [and_(node.c.type == "text", text_names(node.c.atom))]
        if numbers:
            named.append(and_(node.c.type.in_(("integer", "real")),
                              node.c.atom.in_([n if n in _INT64 else float(n) for n in numbers])))
        return or_(*named)

    valid = func.json_valid(raw)
    entry = func.json_tree(case((valid, raw), else_=literal_column("'[]'"))).table_valued(
        "key", "type", "atom", "value", name="entry")
    inner = func.json_tree(case((entry.c.type.in_(("object", "array")), entry.c.value),
                                else_=literal_column("'[]'"))).table_valued("key", "type", "atom", name="inner")
    under = exists(select(literal_column("1")).select_from(inner).where(or_(
        node_names(inner), and_(func.typeof(inner.c.key) == "text", text_names(inner.c.key)))))
    in_entry = exists(select(literal_column("1")).select_from(entry).where(
        entry.c.key.in_(sorted(OTHER_ACCOUNTS)),
        or_(node_names(entry), and_(entry.c.type.in_(("object", "array")), under))))
    forms = {like(json.dumps(v, ensure_ascii=ascii)[1:-1]) for v in values for ascii in (False, True)}
    text = cast(raw, Text)
    return and_(or_(*(text.like(f, escape="\\") for f in sorted(forms))), or_(not_(valid), in_entry))
