"""`socialcare privacy erase|purge`: one person's erasure on request, and the retention purge."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter

import click


def _db(settings):  # noqa: ANN001, ANN202
    from models.db import Database

    return Database.from_settings(settings)


def _summary(counts: Counter) -> str:
    return ", ".join(f"{kind.replace('_', ' ')} {n}" for kind, n in sorted(counts.items())) or "nothing"


@click.group()
def privacy() -> None:
    """Personal data: erase one person's data on request, purge what is older than the retention period."""


@privacy.command("erase")
@click.option("--platform", default=None, help="The platform of the account (x, reddit, discourse...).")
@click.option("--handle", default=None, help="The account's handle, with or without '@' (case-insensitive).")
@click.option("--user-id", default=None, help="The account's user id on the platform.")
@click.option("--customer", "customer_id", type=click.IntRange(1), default=None,
              help="A customer record id: the record and every account linked to it.")
@click.option("--reason", required=True, help="Why (the request's reference); kept in the audit log.")
@click.option("--actor", default="cli", show_default=True, help="Who runs the erasure (the audit log's actor).")
@click.option("--dry-run", is_flag=True, help="Print what would be erased; change nothing.")
@click.pass_obj
def erase(settings, platform: str | None, handle: str | None, user_id: str | None,  # noqa: ANN001
          customer_id: int | None, reason: str, actor: str, dry_run: bool) -> None:
    """Erase everything about one person (posts' content, replies, cases, identity) in one transaction."""
    from service.privacy import Subject, UnknownSubject
    from service.privacy import erase as run_erase

    if customer_id is not None and (platform or handle or user_id):
        raise click.UsageError("give either --customer, or --platform with --handle or --user-id")
    if customer_id is None:
        if not platform or bool(handle) == bool(user_id):
            raise click.UsageError("name the subject: --platform P with --handle H or --user-id ID, or --customer ID")
        if handle is not None and not handle.strip().lstrip("@"):
            raise click.UsageError("--handle is empty")
    if not reason.strip():
        raise click.UsageError("--reason is empty")
    subject = Subject(platform=platform, handle=handle, user_id=user_id, customer_id=customer_id)

    async def go() -> Counter:
        db = _db(settings)
        try:
            await db.upgrade()
            return await run_erase(db, subject, actor=actor, reason=reason.strip(), dry_run=dry_run,
                                   secret=settings.secret("secret_key"))
        finally:
            await db.close()

    try:
        counts = asyncio.run(go())
    except UnknownSubject as exc:
        raise click.ClickException(f"no such subject: {exc}") from None
    click.echo(f"{'dry run, would erase' if dry_run else 'erased'}: {_summary(counts)}")


@privacy.command("purge")
@click.option("--older-than", "days", type=click.IntRange(1), default=None,
              help="Days to keep (default: SOCIALCARE_RETENTION_DAYS).")
@click.option("--actor", default="cli", show_default=True, help="Who runs the purge (the audit log's actor).")
@click.option("--dry-run", is_flag=True, help="Print what would be purged; change nothing.")
@click.pass_obj
def purge(settings, days: int | None, actor: str, dry_run: bool) -> None:  # noqa: ANN001
    """Erase the content of posts, resolved cases' messages and webhook deliveries older than the retention period."""
    from tqdm import tqdm

    from service.retention import cutoff_for, purge_plan
    from service.retention import purge as run_purge

    days = days if days is not None else settings.retention_days
    if days is None:
        raise click.UsageError("no retention period: give --older-than DAYS or set SOCIALCARE_RETENTION_DAYS")
    cutoff = cutoff_for(days)

    async def go() -> Counter:
        db = _db(settings)
        try:
            await db.upgrade()
            total = sum((await purge_plan(db, cutoff)).values())
            with tqdm(total=total, desc="purge", unit=" rows", file=sys.stderr, disable=None) as bar:
                return await run_purge(db, cutoff, actor=actor, dry_run=dry_run, progress=bar.update)
        finally:
            await db.close()

    counts = asyncio.run(go())
    what = "dry run, would purge" if dry_run else "purged"
    click.echo(f"{what} (before {cutoff.isoformat(timespec='seconds')}): {_summary(counts)}")
