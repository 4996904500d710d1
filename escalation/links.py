"""Secure links and the customer sessions they start.

A link's token is 256 bits from :mod:`secrets`; only its SHA-256 is stored (a hash of that much
randomness cannot be brute-forced, so a slow hash adds nothing). A link is bound to one case,
expires, and starts exactly one session: consuming it is a single conditional UPDATE, so two
racing requests cannot both win. Issuing a new link revokes the case's earlier unused ones.
"""

from __future__ import annotations

import hashlib
import hmac
import html.entities
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import Case, CustomerSession, Reply, SecureLink
from models.base import utcnow
from service.audit import record

TOKEN_BYTES = 32
TOKEN_PATTERN = r"[A-Za-z0-9_-]{40,64}"  # token_urlsafe(32) is 43 characters
# a link to a secure page: a URL, or one quoted without its scheme ("care.example.com:8443/care/secure/...",
# or the path alone), as a customer pasting it back to us may. Found from its ``/secure/<token>`` end
# (:func:`_links`): a pattern that may start anywhere tried every start of a long run of characters,
# quadratic in the text's length (a 40 KB post took 40 s)
_TAIL = re.compile(r"/secure/" + TOKEN_PATTERN)
_PATH_BACK = re.compile(r"(?:[\w.~-]+/)*(?:\d+:)?[\w.-]*")  # host, port and path before it, read backwards
# the characters before it that may still be one URL (a tracker's): not a space, nor one a URL never
# holds unescaped (RFC 3986), so the quotes and braces of a JSON text end it, not only spaces
_RUN_BACK = re.compile(r"[^\s\"'<>\\^`{|}]*")
_SPACELESS_BACK = re.compile(r"\S*")
_SCHEME = re.compile(r"https?://")
# one escaped character, however often it was escaped the same way, so that a depth costs no pass:
# percent (%2F, %2f, %252F, ...); JSON or JavaScript (\/, \\\/, \u002f, \x2f), the backslashes of a run
# read from its first only (each start rescanning the run was quadratic); HTML (&#47;, &#x2F;, &sol;,
# &amp;#x2f;, &#38;#47;), the "&" of an entity itself escaped any number of times
_ESCAPE = re.compile(
    r"%(?:25)*(?P<pct>[0-9A-Fa-f]{2})"
    r"|(?<!\\)\\+(?:(?P<slash>/)|u(?P<u>[0-9A-Fa-f]{4})|x(?P<x>[0-9A-Fa-f]{2}))"
    r"|&(?:amp;|#0*38;?|#[xX]0*26;?)*"
    r"(?:#0*(?P<dec>\d{1,7});?|#[xX]0*(?P<hex>[0-9A-Fa-f]{1,6});?|(?P<name>[A-Za-z][A-Za-z0-9]{1,31};))")
# escapes of different kinds nested in each other (%26%2347%3B, \u00252F, %%32%46) take a pass a
# kind; a text still escaped after this many (no serializer nests so deep) has its escaped words
# masked whole rather than decoded further: each pass reads the whole text, so passes are bounded
_DECODE_PASSES = 8
SCRUBBED = "[secure link, removed after delivery]"
MASKED = "[secure link]"


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def secure_url(settings: Any, token: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/secure/{token}"


async def issue_secure_link(session: AsyncSession, case: Case, settings: Any, *, issued_by: str = "bot",
                            now: datetime | None = None) -> str:
    """A new link for ``case`` (the URL, shown once); earlier unused links of the case stop working."""
    now = now or utcnow()
    if case.status == "resolved":
        raise ValueError("a resolved case gets no secure link")
    await session.execute(update(SecureLink).where(
        SecureLink.case_id == case.id, SecureLink.used_at.is_(None), SecureLink.revoked_at.is_(None),
    ).values(revoked_at=now))
    token = secrets.token_urlsafe(TOKEN_BYTES)
    link = SecureLink(case_id=case.id, token_hash=sha256(token), issued_by=issued_by, created_at=now,
                      expires_at=now + timedelta(hours=settings.secure_link_ttl_hours))
    session.add(link)
    await session.flush()
    record(session, issued_by, "secure_link.issued", "case", case.id, link_id=link.id)
    return secure_url(settings, token)


async def usable_link(session: AsyncSession, token: str, now: datetime | None = None) -> SecureLink | None:
    """The link for ``token`` if it may still start a session (unexpired, unused, case open)."""
    if not re.fullmatch(TOKEN_PATTERN, token or ""):
        return None
    now = now or utcnow()
    digest = sha256(token)
    link = await session.scalar(select(SecureLink).where(SecureLink.token_hash == digest))
    if link is None or not hmac.compare_digest(link.token_hash, digest):
        return None
    if link.used_at is not None or link.revoked_at is not None or link.expires_at <= now:
        return None
    case = await session.get(Case, link.case_id)
    return link if case is not None and case.status != "resolved" else None


async def start_session(session: AsyncSession, link: SecureLink, settings: Any,
                        now: datetime | None = None) -> tuple[CustomerSession, str] | None:
    """Consume ``link`` and open its one customer session: (session, cookie value), or None when the
    link was consumed meanwhile. The cookie value is returned once; only its hash is stored."""
    now = now or utcnow()
    won = await session.execute(update(SecureLink).where(
        SecureLink.id == link.id, SecureLink.used_at.is_(None), SecureLink.revoked_at.is_(None),
        SecureLink.expires_at > now,
    ).values(used_at=now))
    if won.rowcount != 1:
        return None
    value = secrets.token_urlsafe(TOKEN_BYTES)
    cs = CustomerSession(case_id=link.case_id, link_id=link.id, session_hash=sha256(value), created_at=now,
                         expires_at=now + timedelta(hours=settings.secure_session_hours))
    session.add(cs)
    await session.flush()
    record(session, "customer", "secure_link.used", "case", link.case_id, link_id=link.id, session_id=cs.id)
    return cs, value


async def session_for_cookie(session: AsyncSession, value: str | None,
                             now: datetime | None = None) -> CustomerSession | None:
    """The live customer session a cookie names, or None (unknown, expired, revoked, case closed)."""
    if not value or len(value) > 100:
        return None
    now = now or utcnow()
    digest = sha256(value)
    cs = await session.scalar(select(CustomerSession).where(CustomerSession.session_hash == digest))
    if cs is None or not hmac.compare_digest(cs.session_hash, digest):
        return None
    if cs.revoked_at is not None or cs.expires_at <= now:
        return None
    return cs


async def live_sessions(session: AsyncSession, ids: set[int], now: datetime | None = None) -> set[int]:
    """Which of these customer sessions may still take part in their case's chat (as
    :func:`session_for_cookie` and an open case): asked again for each event an open socket gets."""
    if not ids:
        return set()
    now = now or utcnow()
    rows = await session.scalars(select(CustomerSession.id).join(Case, Case.id == CustomerSession.case_id).where(
        CustomerSession.id.in_(ids), CustomerSession.revoked_at.is_(None), CustomerSession.expires_at > now,
        Case.status != "resolved"))
    return set(rows)


def session_liveness(db: Any) -> Callable[[set[int]], Awaitable[set[int]]]:
    """:func:`live_sessions` in a transaction of its own, for the chat hub."""
    async def live(ids: set[int]) -> set[int]:
        async with db.session() as session:
            return await live_sessions(session, ids)

    return live


async def revoke_case_access(session: AsyncSession, case_id: int, now: datetime | None = None) -> None:
    """End every link and customer session of a case (on resolution)."""
    now = now or utcnow()
    await session.execute(update(SecureLink).where(SecureLink.case_id == case_id, SecureLink.revoked_at.is_(None),
                                                   SecureLink.used_at.is_(None)).values(revoked_at=now))
    await session.execute(update(CustomerSession).where(CustomerSession.case_id == case_id,
                                                        CustomerSession.revoked_at.is_(None)).values(revoked_at=now))


def shown_without_links(text: str) -> str:
    """A reply's text as a page or the API may show it: a secure link opens the customer's private
    channel, so whoever reads the outbox (an agent, a bot's read token) never sees one, even in the
    moments before it is delivered and scrubbed. A link quoted escaped opens it too: URL-encoded (a
    shortener's, tracker's or share button's ``https%3A%2F%2F...%2Fsecure%2F<token>``), JSON-escaped
    (``https:\\/\\/...``, a payload stored as text) or HTML-escaped (``https:&#x2F;&#x2F;...``), in any
    mix and depth: it is found in the text decoded and masked where it stands, escapes and all, the
    text around it left as written."""
    if _ESCAPE.search(text):
        return _masked_encoded(text, MASKED)
    return _replaced(text, _links(text), MASKED) if "/secure/" in text else text


def _links(text: str) -> list[tuple[int, int]]:
    """Where the secure links in ``text`` are, in linear time: from each ``/secure/<token>``, back over
    the host, port and path before it, or to the ``http(s)://`` that starts its run of URL
    characters; each looks back no further than the previous link's end."""
    spans, last = [], 0
    for m in _TAIL.finditer(text):
        p = m.start()
        before = text[last:p][::-1]
        start = p - _PATH_BACK.match(before).end()
        run = p - _RUN_BACK.match(before).end()
        http = _SCHEME.search(text, run, p + 1)
        if http is not None and http.start() < start:
            start = http.start()
        spans.append((start, m.end()))
        last = m.end()
    return spans


def _replaced(text: str, spans: list[tuple[int, int]], replacement: str) -> str:
    out, last = [], 0
    for a, b in spans:
        out += (text[last:a], replacement)
        last = b
    return "".join(out) + text[last:] if out else text


def _unescaped(m: re.Match[str]) -> str | None:
    """What one :data:`_ESCAPE` match stands for; None for a name that is no HTML entity."""
    kind = m.lastgroup
    if kind == "slash":
        return "/"
    if kind == "name":
        return html.entities.html5.get(m.group(kind))
    code = int(m.group(kind), 10 if kind == "dec" else 16)
    return chr(code) if code <= 0x10FFFF else "\ufffd"


def _decoded(text: str) -> tuple[str, list[int], list[int], list[tuple[int, int]]]:
    """``text`` decoded until nothing changes (at most :data:`_DECODE_PASSES` times), with where each
    decoded character came from (``text[starts[i]:ends[i]]`` became character ``i``), and the escapes
    still left in it when the passes ran out (none if it was decoded to the end)."""
    starts, ends = list(range(len(text))), list(range(1, len(text) + 1))
    passes = 0
    while True:
        found = [(m.start(), m.end(), char) for m in _ESCAPE.finditer(text)
                 if (char := _unescaped(m)) is not None]
        if not found or passes == _DECODE_PASSES:
            return text, starts, ends, [(a, b) for a, b, _ in found]
        passes += 1
        pieces: list[str] = []
        new_starts: list[int] = []
        new_ends: list[int] = []
        last = 0
        for a, b, char in found:
            pieces += (text[last:a], char)
            new_starts += starts[last:a]
            new_starts += [starts[a]] * len(char)
            new_ends += ends[last:a]
            new_ends += [ends[b - 1]] * len(char)
            last = b
        text = "".join(pieces) + text[last:]
        starts, ends = new_starts + starts[last:], new_ends + ends[last:]


def _words(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The runs of non-space characters of ``text`` holding ``spans`` (in order), each read once: a link
    holds no space, and a space stays one however far the text is decoded, so a link still escaped
    lies in one run."""
    words, end = [], 0
    for a, _ in spans:
        if a < end:
            continue
        start = a - _SPACELESS_BACK.match(text[end:a][::-1]).end()
        end = _SPACELESS_BACK.match(text, a).end()
        words.append((start, end))
    return words


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a < out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _masked_encoded(text: str, replacement: str) -> str:
    """``text`` with each secure link found in its decoded form replaced, as written, by ``replacement``
    (and each word still escaped when the decoding passes ran out: it may hide one)."""
    decoded, starts, ends, left = _decoded(text)
    spans = _links(decoded) if "/secure/" in decoded else []
    if left:
        spans = _merged(spans + _words(decoded, left))
    return _replaced(text, [(starts[a], ends[b - 1]) for a, b in spans], replacement)


async def scrub_delivered_links(session: AsyncSession) -> int:
    """Remove secure links from private replies once delivered (or recorded in dry-run): the outbox
    is the one place a token exists in clear, and only until the platform has it."""
    rows = await session.scalars(select(Reply).where(
        Reply.kind == "secure_link_dm", Reply.status.not_in(("pending", "sending")),
        Reply.text.contains("/secure/")))
    n = 0
    for reply in rows:
        scrubbed = _replaced(reply.text, _links(reply.text), SCRUBBED)
        if scrubbed != reply.text:
            reply.text = scrubbed
            n += 1
    return n
