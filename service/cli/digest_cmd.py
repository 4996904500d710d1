"""`socialcare digest`: the sentiment digest as an HTML file (charts inside), CSV, or an e-mail."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click


def _parse_end(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        end = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter("an ISO 8601 date or date-time, e.g. 2026-11-24T00:00") from exc
    return end if end.tzinfo else end.replace(tzinfo=UTC)


@click.command()
@click.option("--period", type=click.Choice(["day", "week"]), default="day", show_default=True)
@click.option("--out", "out", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              help="Write the digest as one HTML file (charts embedded; opens without JavaScript).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              help="Also write the underlying numbers as CSV.")
@click.option("--end", default=None, help="End of the period (ISO 8601, UTC when no zone); default: now.")
@click.option("--send", is_flag=True, help="Mail it over SMTP to the recipients of the period's schedule (or --to).")
@click.option("--to", "recipients", multiple=True, help="Recipient for --send (repeatable).")
@click.pass_obj
def digest(settings, period: str, out: Path | None, csv_path: Path | None, end: str | None,
           send: bool, recipients: tuple[str, ...]) -> None:
    """Volume per channel, sentiment over time, issue types, emerging terms, incidents, notable
    posts (redacted), against the previous period."""
    if not (out or csv_path or send):
        raise click.UsageError("give --out FILE.html, --csv FILE.csv or --send")
    end_at = _parse_end(end)

    async def go() -> tuple[int, list[str], Any]:
        from sqlalchemy import select

        from console.digest import compute, latest_day_before, to_csv
        from console.digest_mail import build_email, charts_for, render_html
        from console.digest_mail import send as smtp_send
        from models.console import DigestSchedule
        from models.db import Database

        db = Database.from_settings(settings)
        try:
            await db.upgrade()
            async with db.session() as session:
                d = await compute(session, period, end_at)
                earlier = await latest_day_before(session, d.start) if not d.total else None
                schedule = await session.scalar(select(DigestSchedule).where(DigestSchedule.period == period))
            charts = await charts_for(d)
            if out:
                out.write_text(render_html(d, charts), encoding="utf-8")
            if csv_path:
                csv_path.write_text(to_csv(d), encoding="utf-8")
            to = list(recipients) or (list(schedule.recipients) if schedule else [])
            if send:
                if not to:
                    raise click.ClickException("no recipients: use --to or set the schedule in the console")
                await smtp_send(settings, build_email(d, charts, sender=settings.smtp_from, recipients=to))
            return d.total, to, earlier
        finally:
            await db.close()

    try:
        total, to, earlier = asyncio.run(go())
    except OSError as exc:
        raise click.ClickException(f"could not send or write the digest: {exc}") from exc
    click.echo(f"digest ({period}): {total} mentions" + (f" → {out}" if out else "") +
               (f", numbers → {csv_path}" if csv_path else "") + (f", mailed to {len(to)} recipients" if send else ""))
    if earlier:
        click.echo(f"no mentions in this period; the latest is from {earlier}: try --end {earlier + timedelta(days=1)}",
                   err=True)
