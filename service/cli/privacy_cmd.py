"""`socialcare privacy erase|export|purge`: one person's erasure or data export on request, and the
retention purge.

With the Redis bus the erasure, the export and the purge reach its dead letters
(:mod:`service.privacy_bus`). The in-process bus lives inside ``socialcare run``: a command cannot
reach it, so the erasure says so, and the export says so in its document too.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter

import click

IN_PROCESS_NOTE = ("dead letters not checked: the in-process bus (SOCIALCARE_BUS=inprocess) keeps them in the "
                   "memory of the running `socialcare run`, out of a command's reach: an admin discards the "
                   "person's on /admin/deadletters; they go when it stops, or with its retention purge")
IN_PROCESS_EXPORT_NOTE = ("dead letters not checked (the document says so): the in-process bus (SOCIALCARE_BUS="
                          "inprocess) keeps them in the memory of the running `socialcare run`, out of a command's "
                          "reach: an admin finds the person's on /admin/deadletters")


async def _with_db_and_bus(settings, work):  # noqa: ANN001, ANN202
    """``await work(db, bus)`` with the database migrated and the Redis bus the settings name started
    (None for the in-process one, out of a command's reach); both closed afterwards."""
    from models.db import Database

    db, bus = Database.from_settings(settings), None
    try:
        await db.upgrade()
        if settings.bus == "redis":
            from service.bus import make_bus

            bus = make_bus(settings)
            await bus.start()
        return await work(db, bus)
    finally:
        if bus is not None:
            await bus.close()
        await db.close()


def _summary(counts: Counter) -> str:
    return ", ".join(f"{kind.replace('_', ' ')} {n}" for kind, n in sorted(counts.items())) or "nothing"


def subject_options(what: str):  # noqa: ANN201
    """The options that name a person (``erase`` and ``export`` name them alike; see :func:`_subject`)."""
    options = (
        click.option("--platform", default=None, help="The platform of the account (x, reddit, discourse...)."),
        click.option("--handle", default=None, help="The account's handle, with or without '@' (case-insensitive); "
                     "refused as ambiguous if more than one account used it (then give --user-id)."),
        click.option("--user-id", default=None, help="The account's user id on the platform."),
        click.option("--customer", "customer_id", type=click.IntRange(1), default=None,
                     help="A customer record id: the record and every account linked to it."),
        click.option("--reason", required=True, help="Why (the request's reference); kept in the audit log."),
        click.option("--actor", default="cli", show_default=True, help=f"Who runs the {what} (the audit log's actor)."),
    )

    def apply(fn):  # noqa: ANN001, ANN202
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


@click.group()
def privacy() -> None:
    """Personal data: erase or export one person's data on request, purge what is older than the retention period."""


@privacy.command("erase")
@subject_options("erasure")
@click.option("--dry-run", is_flag=True, help="Print what would be erased; change nothing.")
@click.pass_obj
def erase(settings, platform: str | None, handle: str | None, user_id: str | None,  # noqa: ANN001
          customer_id: int | None, reason: str, actor: str, dry_run: bool) -> None:
    """Erase everything about one person (posts' content, replies, cases, identity, dead letters) in one transaction.

    Their accounts are tombstoned (keyed hashes, never the handle): a post of theirs published
    before now and still on its way to ingest is never stored; what they publish afterwards is new
    data and stored as usual. The --reason is audited with their handle and names replaced by
    [subject]. Running it twice is harmless; an unknown subject exits 1 (an account named is
    tombstoned all the same: their first post may be on its way; an unknown --customer id changes
    and records nothing). The tombstones' key is
    SOCIALCARE_SECRET_KEY (else var/privacy.key): every process must share it.
    """
    from service.bus import BusUnavailable
    from service.erasure import AmbiguousSubject, UnknownSubject
    from service.erasure import erase as run_erase
    from service.tombstones import privacy_key

    subject = _subject(platform, handle, user_id, customer_id)
    if not reason.strip():
        raise click.UsageError("--reason is empty")

    async def go(db, bus) -> Counter:  # noqa: ANN001
        return await run_erase(db, subject, actor=actor, reason=reason.strip(), dry_run=dry_run,
                               secret=privacy_key(settings), bus=bus)

    try:
        counts = asyncio.run(_with_db_and_bus(settings, go))
    except UnknownSubject as exc:
        raise click.ClickException(_unknown(exc, customer_id, dry_run)) from None
    except AmbiguousSubject as exc:
        raise click.ClickException(f"{exc}: nobody was erased") from None
    except BusUnavailable as exc:
        raise click.ClickException(f"{exc}: nothing was erased, run it again") from None
    click.echo(f"{'dry run, would erase' if dry_run else 'erased'}: {_summary(counts)}")
    if settings.bus != "redis":
        click.echo(IN_PROCESS_NOTE, err=True)


def _unknown(exc: Exception, customer_id: int | None, dry_run: bool) -> str:
    """What an erasure of nobody on record says: plainly that nobody was erased."""
    if customer_id is not None:  # a mistyped id must not read as an erasure
        return (f"no such subject: {exc}: nobody was erased and nothing was recorded; check the customer id, "
                "or name the account with --platform and --handle or --user-id")
    if dry_run:
        return f"no such subject: {exc}: nobody would be erased"
    return (f"no such subject: {exc}: nobody was erased; the account is tombstoned all the same, so its posts "
            "published before now will not be stored if they arrive later")


def _subject(platform: str | None, handle: str | None, user_id: str | None, customer_id: int | None):  # noqa: ANN202
    """The person named as ``erase`` and ``export`` name them; a usage error when it is unclear."""
    from service.erasure import Subject

    if customer_id is not None and (platform or handle or user_id):
        raise click.UsageError("give either --customer, or --platform with --handle or --user-id")
    if customer_id is None:
        if not platform or bool(handle) == bool(user_id):
            raise click.UsageError("name the subject: --platform P with --handle H or --user-id ID, or --customer ID")
        if handle is not None and not handle.strip().lstrip("@"):
            raise click.UsageError("--handle is empty")
    return Subject(platform=platform, handle=handle, user_id=user_id, customer_id=customer_id)


@privacy.command("export")
@subject_options("export")
@click.option("--out", "out", type=click.Path(dir_okay=False, writable=True, allow_dash=True), default="-",
              show_default=True, help="The JSON file to write (created readable by its owner only); '-' for stdout.")
@click.pass_obj
def export(settings, platform: str | None, handle: str | None, user_id: str | None,  # noqa: ANN001
           customer_id: int | None, reason: str, actor: str, out: str) -> None:
    """Export everything held about one person as one JSON document (GDPR art. 15, the right of access).

    Their accounts, customer record, posts with their platform payloads, triage and routing, the
    replies sent to them, moderation actions on their posts, copies of their posts kept as
    community answers, outgoing webhook deliveries about their posts and cases, cases and case
    messages, secure links issued (never a token), the audit entries about them (who viewed their
    record, when and why) and, with the Redis bus, their dead letters. Never other people's data;
    what is deliberately left out is listed in the document (not_included, with the reason). The
    export is audited (privacy.exported: the actor, the reason and counts, no content). A person
    erased before exports as what remains. An unknown subject exits 1.
    """
    import json
    import os

    from service.bus import BusUnavailable
    from service.erasure import AmbiguousSubject, UnknownSubject
    from service.privacy_export import export as run_export
    from service.privacy_export import json_default
    from service.tombstones import privacy_key

    subject = _subject(platform, handle, user_id, customer_id)
    if not reason.strip():
        raise click.UsageError("--reason is empty")
    if out != "-" and not os.access(os.path.dirname(os.path.abspath(out)), os.W_OK):
        raise click.BadParameter(f"cannot write in the folder of {out}", param_hint="--out")

    async def go(db, bus) -> dict:  # noqa: ANN001
        return await run_export(db, subject, actor=actor, reason=reason.strip(), secret=privacy_key(settings),
                                bus=bus)

    try:
        doc = asyncio.run(_with_db_and_bus(settings, go))
    except UnknownSubject as exc:
        raise click.ClickException(f"no such subject: {exc}: nothing was exported") from None
    except AmbiguousSubject as exc:
        raise click.ClickException(f"{exc}: nothing was exported") from None
    except BusUnavailable as exc:
        raise click.ClickException(f"{exc}: nothing was exported, run it again") from None
    text = json.dumps(doc, default=json_default, ensure_ascii=False, indent=2) + "\n"
    if out == "-":
        click.echo(text, nl=False)
    else:
        _write_private(out, text)
    click.echo(f"exported{' (erased)' if doc['erased'] else ''}: {_summary(Counter(doc['counts']))}"
               + ("" if out == "-" else f" to {out}"), err=out == "-")
    if settings.bus != "redis":
        click.echo(IN_PROCESS_EXPORT_NOTE, err=True)


def _write_private(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a file readable by its owner only, renamed into place."""
    import os

    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


@privacy.command("purge")
@click.option("--older-than", "days", type=click.IntRange(1), default=None,
              help="Days to keep (default: SOCIALCARE_RETENTION_DAYS).")
@click.option("--actor", default="cli", show_default=True, help="Who runs the purge (the audit log's actor).")
@click.option("--dry-run", is_flag=True, help="Print what would be purged; change nothing.")
@click.pass_obj
def purge(settings, days: int | None, actor: str, dry_run: bool) -> None:  # noqa: ANN001
    """Erase the content of posts, resolved cases' messages, webhook deliveries, dead letters and erasure tombstones older than the retention period.

    Authors whose posts are all older (and who have no open case) are anonymised. Open cases, the
    posts they hold and anything newer are kept; so are the audit log and customer records. Erasure
    tombstones go once older than the period and than their lifetime (30 days, or the connectors'
    longest re-check window: a post published before an erasure may still arrive that late).
    One privacy.purged audit entry per run (counts only).
    """
    from tqdm import tqdm

    from service.retention import cutoff_for, purge_plan
    from service.retention import purge as run_purge
    from service.tombstones import lifetime

    days = days if days is not None else settings.retention_days
    if days is None:
        raise click.UsageError("no retention period: give --older-than DAYS or set SOCIALCARE_RETENTION_DAYS")
    cutoff = cutoff_for(days)

    async def go(db, bus) -> Counter:  # noqa: ANN001
        keep = lifetime(settings)
        total = sum((await purge_plan(db, cutoff, keep)).values())
        with tqdm(total=total, desc="purge", unit=" rows", file=sys.stderr, disable=None) as bar:
            return await run_purge(db, cutoff, actor=actor, dry_run=dry_run, progress=bar.update, bus=bus,
                                   tombstone_lifetime=keep)

    counts = asyncio.run(_with_db_and_bus(settings, go))
    what = "dry run, would purge" if dry_run else "purged"
    click.echo(f"{what} (before {cutoff.isoformat(timespec='seconds')}): {_summary(counts)}")
