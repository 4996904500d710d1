"""`socialcare deadletter`: inspect and retry messages that failed every delivery.

Payloads can hold personal data (mention texts, handles), so listings leave them out unless
``--show-payload`` asks for them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from service import deadletters
from service.bus import Bus, BusUnavailable, make_bus
from service.deadletters import ALL, clean

T = TypeVar("T")


def _run(settings, work: Callable[[Bus], Awaitable[T]]) -> T:  # noqa: ANN001 - Settings
    if settings.bus != "redis":
        raise click.ClickException(
            "the in-process bus (SOCIALCARE_BUS=inprocess) keeps its dead letters inside the running "
            "service: see and retry them in its console at /admin/deadletters (admins); this command "
            "needs the Redis bus (SOCIALCARE_BUS=redis)")

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


@click.group()
def deadletter() -> None:
    """Inspect and retry dead letters: messages that failed their stage on every delivery."""


@deadletter.command("list")
@click.option("--topic", default=None, help="Only dead letters of this topic (stage).")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most this many, oldest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a table.")
@click.option("--show-payload", is_flag=True, help="Include the payload (may hold personal data).")
@click.pass_obj
def list_cmd(settings, topic: str | None, limit: int, as_json: bool, show_payload: bool) -> None:  # noqa: ANN001
    """List dead letters: id, the original stream entry id (as the worker's log names it), topic, key,
    attempts, failed_at, reason (payloads only on request); says how many more there are."""
    dead = _run(settings, lambda bus: bus.dead_letters(topic, ALL))
    rows = [deadletters.row(d, show_payload) for d in dead[:limit]]
    more = len(dead) - len(rows)
    hint = (f"… and {more} more (of {len(dead)}{' on topic ' + topic if topic else ''}); "
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


@deadletter.command()
@click.argument("ids", nargs=-1)
@click.option("--all", "retry_all", is_flag=True, help="Retry every dead letter (of --topic, if given).")
@click.option("--topic", default=None, help="With --all: only this topic.")
@click.pass_obj
def retry(settings, ids: tuple[str, ...], retry_all: bool, topic: str | None) -> None:  # noqa: ANN001
    """Put dead letters back on their topic with a fresh attempt count: retry ID... or --all [--topic T].

    Use it once the cause (a bug, an outage) is fixed. Exits with status 1 when an ID is unknown or a
    dead letter cannot be retried (an undecodable entry).
    """
    if ids and retry_all:
        raise click.UsageError("give dead-letter IDs or --all, not both")
    if topic and not retry_all:
        raise click.UsageError("--topic only applies with --all")
    if not ids and not retry_all:
        raise click.UsageError("give the dead-letter IDs to retry (see `socialcare deadletter list`) or --all")

    async def work(bus: Bus) -> deadletters.Outcome:
        return await deadletters.retry(bus, await deadletters.targets(bus, ids, topic))

    outcome = _run(settings, work)
    done, missing = outcome.done, outcome.missing
    for _dead_id, why in outcome.refused:
        click.echo(clean(why), err=True)
    for dead_id in missing:
        click.echo(f"{clean(dead_id)}: no such dead letter", err=True)
    click.echo(f"retried {len(done)} dead letter(s)")
    if missing or outcome.refused:
        raise SystemExit(1)
