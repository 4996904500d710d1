"""`socialcare users`: console accounts and bot API tokens."""

from __future__ import annotations

import asyncio

import click
from sqlalchemy import select

from models import ROLES

# every scope a route names (console/api, /metrics), and "*" for all of them
SCOPES = ("mentions:read", "replies:write", "actions:write", "templates:read", "templates:write", "digest:read",
          "cases:read", "connectors:read", "metrics", "webhooks", "ingest", "*")


def _db(settings):  # noqa: ANN001, ANN202
    from models.db import Database

    return Database.from_settings(settings)


@click.group()
def users() -> None:
    """Console users (roles: agent, moderator, marketing, admin) and bot API tokens."""


@users.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--email", default=None)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="At least 10 characters (prompted when omitted; never pass it on a shared machine).")
@click.pass_obj
def add(settings, username: str, role: str, email: str | None, password: str) -> None:  # noqa: ANN001
    """Create a console user with a role (the password is hashed with argon2)."""
    from console.auth import create_user
    from service.audit import record

    async def go() -> int:
        db = _db(settings)
        try:
            await db.upgrade()
            async with db.session() as session:
                user = await create_user(session, username, password, role, email)
                record(session, "cli", "user.created", "user", user.id, role=role)
                await session.commit()
                return user.id
        finally:
            await db.close()

    try:
        uid = asyncio.run(go())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"user {username} ({role}) created with id {uid}")


@users.command("list")
@click.pass_obj
def list_(settings) -> None:  # noqa: ANN001
    """List console users and their roles."""
    from models import User

    async def go() -> list:
        db = _db(settings)
        try:
            await db.upgrade()
            async with db.session() as session:
                return list(await session.scalars(select(User).order_by(User.username)))
        finally:
            await db.close()

    for u in asyncio.run(go()):
        click.echo(f"{u.id}\t{u.username}\t{u.role}\t{'active' if u.active else 'disabled'}")


@users.command("token")
@click.argument("username")
@click.option("--name", required=True, help="What the token is for (e.g. the bot's name).")
@click.option("--scope", "scopes", multiple=True, required=True, type=click.Choice(SCOPES),
              help="Scope (repeatable); a token opens only API routes with one of its scopes.")
@click.pass_obj
def token(settings, username: str, name: str, scopes: tuple[str, ...]) -> None:  # noqa: ANN001
    """Create an API token for USERNAME's bot; printed once, only its hash is stored."""
    if not name.strip() or len(name) > 100 or not name.isprintable():
        raise click.UsageError("--name is what the token is for: 1-100 printable characters")
    from console.auth import create_api_token
    from models import User
    from service.audit import record

    async def go() -> str:
        db = _db(settings)
        try:
            await db.upgrade()
            async with db.session() as session:
                user = await session.scalar(select(User).where(User.username == username))
                if user is None:
                    raise click.ClickException(f"no user {username!r}")
                value = await create_api_token(session, user, name, list(scopes))
                record(session, "cli", "token.created", "user", user.id, name=name, scopes=list(scopes))
                await session.commit()
                return value
        finally:
            await db.close()

    click.echo(asyncio.run(go()))
