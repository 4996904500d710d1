"""`socialcare deadletter`: inspect and retry messages that failed every delivery.

Payloads can hold personal data (mention texts, handles), so listings leave them out unless
``--show-payload`` asks for them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from service.bus import Bus, BusUnavailable, DeadLetter, make_bus

T = TypeVar("T")
ALL = 10**9  # "every dead letter" for the backends' limit


def _run(settings, work: Callable[[Bus], Awaitable[T]]) -> T:  # noqa: ANN001 - Settings
    if settings.bus != "redis":
        raise click.ClickException(
            "the in-process bus (SOCIALCARE_BUS=inprocess) keeps its dead letters inside the running "
            "service; this command needs the Redis bus (SOCIALCARE_BUS=redis)")

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


def _clean(text: str, width: int | None = None) -> str:
    """One terminal-safe line: control characters (a key or reason may hold any) escaped."""
    out = "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                  for c in text)
    return out if width is None or len(out) <= width else out[: width - 1] + "…"


def _row(d: DeadLetter, show_payload: bool) -> dict[str, Any]:
    # entry_id: the message's id on its own stream, the one the worker's log names ("entry_id")
    row: dict[str, Any] = {"id": d.id, "entry_id": d.extra.get("entry_id", ""), "topic": d.topic, "key": d.key,
                           "attempts": d.attempts, "reason": d.reason, "failed_at": d.failed_at}
    if "undecodable" in d.extra:
        row["undecodable"] = d.extra["undecodable"]
    if show_payload:
        row["payload"] = d.extra["raw"] if "undecodable" in d.extra else d.payload
    return row


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
    rows = [_row(d, show_payload) for d in dead[:limit]]
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
        cells = [_clean(str(row[name]), w).ljust(w) for name, w in widths.items()]
        reason = row["reason"] + (f" ({row['undecodable']})" if "undecodable" in row else "")
        click.echo("  ".join(cells) + "  " + _clean(reason, 120))
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

    async def work(bus: Bus) -> tuple[list[str], list[str], list[str]]:
        targets = list(dict.fromkeys(ids)) or [d.id for d in await bus.dead_letters(topic, ALL)]  # once each
        done, missing, refused = [], [], []
        for dead_id in targets:
            try:
                (done if await bus.retry_dead_letter(dead_id) else missing).append(dead_id)
            except ValueError as exc:  # CodecError: an undecodable entry stays where it is
                refused.append(dead_id)
                click.echo(_clean(str(exc)), err=True)
        return done, missing, refused

    done, missing, refused = _run(settings, work)
    for dead_id in missing:
        click.echo(f"{_clean(dead_id)}: no such dead letter", err=True)
    click.echo(f"retried {len(done)} dead letter(s)")
    if missing or refused:
        raise SystemExit(1)
