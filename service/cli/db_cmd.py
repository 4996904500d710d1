"""`socialcare db`: schema migrations."""

from __future__ import annotations

import asyncio

import click

from models.db import Database


@click.group()
def db() -> None:
    """Database schema (Alembic migrations, identical on SQLite and PostgreSQL)."""


@db.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.pass_obj
def upgrade(settings, revision: str) -> None:  # noqa: ANN001
    """Create or migrate the database schema to REVISION (safe to run repeatedly)."""

    async def go() -> tuple[str | None, str | None]:
        database = Database.from_settings(settings)
        try:
            before = await database.current_revision()
            await database.upgrade(revision)
            return before, await database.current_revision()
        finally:
            await database.close()

    try:
        before, current = asyncio.run(go())
    except Exception as exc:  # noqa: BLE001
        raise click.ClickException(f"migration failed: {type(exc).__name__}: {exc}") from exc
    if before == current:
        click.echo(f"database at revision {current} (nothing to do)")
    else:
        click.echo(f"database at revision {current} (was {before or 'empty'})")


@db.command()
@click.pass_obj
def current(settings) -> None:  # noqa: ANN001
    """Print the database's current schema revision."""

    async def go() -> str | None:
        database = Database.from_settings(settings)
        try:
            return await database.current_revision()
        finally:
            await database.close()

    click.echo(asyncio.run(go()) or "empty database")
