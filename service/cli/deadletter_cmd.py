"""`socialcare deadletter`: inspect, retry and discard messages that failed every delivery.

Payloads can hold personal data (mention texts, handles), so listings leave them out unless
``--show-payload`` asks for them (secure links masked even then). Retries, discards and listings
that show payloads are audited in the database's audit log (``deadletter.retried`` /
``deadletter.discarded`` / ``deadletter.payload_viewed``: the actor and the ids, never a payload), as
the console's and the API's are; a database that does not answer stops them before anything is
done or shown.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from escalation.links import shown_without_links
from service import deadletters
from service.bus import Bus, BusUnavailable, DeadLetter, make_bus
from service.deadletters import ALL, PAST, clean

T = TypeVar("T")
PREVIEW = 20  # dead letters a discard's confirmation names, one a line
ACTOR_MAX = 100  # the audit log's actor column


def _run(settings, work: Callable[[Bus], Awaitable[T]]) -> T:  # noqa: ANN001 - Settings
    if settings.bus != "redis":
        raise click.ClickException(
            "the in-process bus (SOCIALCARE_BUS=inprocess) keeps its dead letters inside the running "
            "service: see, retry and discard them in its console at /admin/deadletters (admins); this "
            "command needs the Redis bus (SOCIALCARE_BUS=redis)")

    async def go() -> T:
        bus = make_bus(settings)
        await bus.start()
        try:
            return await work(bus)
        finally:
            await bus.close()

    try:
        return asyncio.run(go())
    except BusUnavailable as exc:
        raise click.ClickException(str(exc)) from exc


def os_user_actor() -> str:
    """``cli:<the OS user name>``: who ran the command, as the audit log's actor."""
    try:
        name = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name and no passwd entry (a container's bare uid)
        name = f"uid-{os.getuid()}"
    return f"cli:{name}"[:ACTOR_MAX]


def _actor(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    value = value.strip()
    if not value or len(value) > ACTOR_MAX:
        raise click.BadParameter(f"give 1 to {ACTOR_MAX} characters")
    return value


def actor_option(what: str):  # noqa: ANN201
    return click.option("--actor", default=os_user_actor, show_default="cli:<your OS user name>",
                        callback=_actor, help=f"Who {what} (the audit log's actor).")


def _chosen_by(ids: tuple[str, ...], every: bool, topic: str | None, verb: str) -> None:
    """Usage errors for ``ID...`` vs ``--all [--topic T]`` (retry and discard choose alike)."""
    if ids and every:
        raise click.UsageError("give dead-letter IDs or --all, not both")
    if topic and not every:
        raise click.UsageError("--topic only applies with --all")
    if not ids and not every:
        raise click.UsageError(f"give the dead-letter IDs to {verb} (see `socialcare deadletter list`) or --all")


UNAUDITED = "nothing was done (every retry and discard is audited in it)"


async def _audit_log(settings, refused: str = UNAUDITED):  # noqa: ANN001, ANN202 - Settings -> Database
    """The database holding the audit log, answering and migrated; a ClickException (``refused``:
    nothing done) when it does not answer: no retry, discard or payload shown goes unaudited."""
    from models.db import Database

    db = Database.from_settings(settings)
    if not await db.ping():
        await db.close()
        raise click.ClickException(f"the database does not answer: {refused}; run it again once it is back")
    try:
        await db.upgrade()
    except BaseException:
        await db.close()
        raise
    return db


def _audited(settings, verb: str, actor: str, ids: tuple[str, ...] | list[str],  # noqa: ANN001
             topic: str | None) -> deadletters.Outcome:
    """Retry or discard ``ids`` (none: every dead letter of ``topic``), each once, and audit it with
    ids only, :data:`deadletters.AT_ONCE` at a time, so that an interruption leaves at most one
    batch unaudited and no audit entry grows without bound."""
    total = deadletters.Outcome()

    async def work(bus: Bus) -> deadletters.Outcome:
        db = await _audit_log(settings)
        try:
            chosen = await deadletters.targets(bus, ids, topic)
            for start in range(0, len(chosen), deadletters.AT_ONCE):
                batch = chosen[start:start + deadletters.AT_ONCE]
                try:
                    outcome = await deadletters.act(bus, verb, batch)
                except deadletters.Interrupted as exc:
                    await _audit(db, actor, verb, batch, exc.outcome, topic, total)
                    raise click.ClickException(
                        f"{exc}: {PAST[verb]} {len(total.done)} of {len(chosen)} dead letter(s) before it went "
                        "away (audited); run it again for the rest") from None
                await _audit(db, actor, verb, batch, outcome, topic, total)
            return total
        finally:
            await db.close()

    return _run(settings, work)


async def _audit(db, actor: str, verb: str, ids: list[str], outcome: deadletters.Outcome,  # noqa: ANN001
                 topic: str | None, total: deadletters.Outcome) -> None:
    """Audit one batch and add it to ``total``; if the audit log cannot be written, say what was done."""
    total.done += outcome.done
    total.missing += outcome.missing
    total.refused += outcome.refused
    try:
        await deadletters.audit_action(db, actor, verb, ids, outcome, topic=topic)
    except Exception as exc:  # noqa: BLE001 - the action happened: the operator must know which
        raise click.ClickException(
            f"{PAST[verb]} {len(total.done)} dead letter(s) ({', '.join(total.done) or 'none'}) but the audit "
            f"entry could not be written ({type(exc).__name__}): record it by hand") from None


@click.group()
def deadletter() -> None:
    """Inspect, retry and discard dead letters: messages that failed their stage on every delivery."""


@deadletter.command("list")
@click.option("--topic", default=None, help="Only dead letters of this topic (stage).")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most this many, oldest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a table.")
@click.option("--show-payload", is_flag=True,
              help="Include the payload (may hold personal data; audited as deadletter.payload_viewed).")
@actor_option("is shown the payloads")
@click.pass_obj
def list_cmd(settings, topic: str | None, limit: int, as_json: bool, show_payload: bool,  # noqa: ANN001
             actor: str) -> None:
    """List dead letters: id, the original stream entry id (as the worker's log names it), topic, key,
    attempts, failed_at, reason (payloads only on request); says how many more there are.

    With --show-payload the listing is audited in the database's audit log before anything is shown
    (deadletter.payload_viewed: the --actor, the topic, the count and the ids, never a payload); a
    database that does not answer stops it. Secure links a customer quoted are masked.
    """
    dead, total = _run(settings, lambda bus: _read(settings, bus, topic, limit, actor if show_payload else None))
    rows = [deadletters.row(d, show_payload) for d in dead[:limit]]
    more = max(total - len(rows), 0)
    hint = (f"… and {more} more (of {total}{' on topic ' + topic if topic else ''}); "
            "see them with --limit N, or narrow them with --topic T") if more else ""
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=True))
        if hint:
            click.echo(hint, err=True)  # stdout stays JSON lines
        return
    if not rows:
        click.echo("no dead letters" + (f" on topic {topic}" if topic else ""), err=True)
        return
    widths = {"id": 20, "entry_id": 20, "topic": 12, "key": 28, "attempts": 8, "failed_at": 32}
    click.echo("  ".join(name.upper().ljust(w) for name, w in widths.items()) + "  REASON")
    for row in rows:
        cells = [clean(str(row[name]), w).ljust(w) for name, w in widths.items()]
        reason = row["reason"] + (f" ({row['undecodable']})" if "undecodable" in row else "")
        click.echo("  ".join(cells) + "  " + clean(reason, 120))
        if show_payload:
            click.echo("    payload: " + json.dumps(row["payload"], ensure_ascii=True))
    if hint:
        click.echo(hint)


async def _read(settings, bus: Bus, topic: str | None, limit: int,  # noqa: ANN001 - Settings
                actor: str | None) -> tuple[list[DeadLetter], int]:
    """The first ``limit`` dead letters (of ``topic``), oldest first, and how many there are in all
    (counted by the bus, not read: a listing of 2 read all 30,000 letters and took 11 s); with an
    ``actor``, those whose payloads are about to be shown audited first (committed)."""
    if actor is None:
        return await _shown(bus, topic, limit)
    db = await _audit_log(settings, "no payload was shown (every listing of payloads is audited in it)")
    try:
        dead, total = await _shown(bus, topic, limit)
        if dead:
            try:
                await deadletters.audit_shown(db, actor, dead, topic)
            except Exception as exc:  # noqa: BLE001 - unaudited, so not shown
                raise click.ClickException(f"the audit entry could not be written ({type(exc).__name__}): "
                                           "no payload was shown") from None
        return dead, total
    finally:
        await db.close()


async def _shown(bus: Bus, topic: str | None, limit: int) -> tuple[list[DeadLetter], int]:
    dead = await bus.dead_letters(topic, limit)
    counts = await bus.dead_letter_counts()
    total = counts.get(topic, 0) if topic else sum(counts.values())
    return dead, max(total, len(dead))  # a letter buried between the two reads is "more"


@deadletter.command()
@click.argument("ids", nargs=-1)
@click.option("--all", "retry_all", is_flag=True, help="Retry every dead letter (of --topic, if given).")
@click.option("--topic", default=None, help="With --all: only this topic.")
@actor_option("retries them")
@click.pass_obj
def retry(settings, ids: tuple[str, ...], retry_all: bool, topic: str | None, actor: str) -> None:  # noqa: ANN001
    """Put dead letters back on their topic with a fresh attempt count: retry ID... or --all [--topic T].

    Use it once the cause (a bug, an outage) is fixed. Audited in the database's audit log
    (deadletter.retried: the --actor and the ids, never a payload); a database that does not answer
    stops it before anything is retried. Exits with status 1 when an ID is unknown or a dead letter
    cannot be retried (an undecodable entry: discard it).
    """
    _chosen_by(ids, retry_all, topic, "retry")
    outcome = _audited(settings, "retry", actor, ids, topic)
    done, missing = outcome.done, outcome.missing
    for _dead_id, why in outcome.refused:
        click.echo(clean(why), err=True)
    for dead_id in missing:
        click.echo(f"{clean(dead_id)}: no such dead letter", err=True)
    click.echo(f"retried {len(done)} dead letter(s)")
    if missing or outcome.refused:
        raise SystemExit(1)


@deadletter.command()
@click.argument("ids", nargs=-1)
@click.option("--all", "discard_all", is_flag=True, help="Discard every dead letter (of --topic, if given).")
@click.option("--topic", default=None, help="With --all: only this topic.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (for scripts).")
@actor_option("discards them")
@click.pass_obj
def discard(settings, ids: tuple[str, ...], discard_all: bool, topic: str | None, yes: bool,  # noqa: ANN001
            actor: str) -> None:
    """Remove dead letters for good, without retrying them: discard ID... or --all [--topic T].

    For a poison message whose cause is diagnosed: its message is lost (`retry` would put it back).
    Names the dead letters it will remove and asks for confirmation, unless --yes; with --all it then
    removes those it named, not any that failed since. Audited in the database's audit log
    (deadletter.discarded: the --actor and the ids, never a payload); a database that does not answer
    stops it before anything is discarded. Exits with status 1 when an ID is unknown (retried or
    discarded already) or the confirmation is refused.
    """
    _chosen_by(ids, discard_all, topic, "discard")
    chosen: tuple[str, ...] | list[str] = ids
    if not yes:
        dead = _run(settings, lambda bus: bus.dead_letters(topic if discard_all else None, ALL))
        wanted = set(ids)
        shown = [d for d in dead if discard_all or d.id in wanted]
        if discard_all:
            if not shown:
                click.echo("discarded 0 dead letter(s)")
                return
            chosen = [d.id for d in shown]
        if shown:
            _confirm_discard(shown, topic)
    outcome = _audited(settings, "discard", actor, chosen, topic if discard_all else None)
    for dead_id in outcome.missing:
        click.echo(f"{clean(dead_id)}: no such dead letter", err=True)
    click.echo(f"discarded {len(outcome.done)} dead letter(s)")
    if outcome.missing:
        raise SystemExit(1)


def _confirm_discard(shown: list[DeadLetter], topic: str | None) -> None:
    """Name what a discard will remove (no payloads) and ask; "n" aborts (exit 1), nothing done."""
    for d in shown[:PREVIEW]:
        click.echo(f"  {clean(d.id, 20).ljust(20)}  {clean(d.topic, 12).ljust(12)}  {clean(d.key, 28).ljust(28)}  "
                   f"{clean(shown_without_links(d.reason), 80)}", err=True)
    if len(shown) > PREVIEW:
        click.echo(f"  … and {len(shown) - PREVIEW} more", err=True)
    topics = ", ".join(f"{t} {n}" for t, n in sorted(Counter(d.topic for d in shown).items()))
    where = f" of topic {topic}" if topic else f" ({topics})"
    click.confirm(f"Discard {len(shown)} dead letter(s){where} for good?", abort=True, err=True)
