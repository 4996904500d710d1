"""`socialcare users`: console accounts and bot API tokens."""

from __future__ import annotations

import asyncio

import click
from sqlalchemy import select

from console.auth import SCOPE_ROLES
from models import ROLES

# every scope a route names (console/api, /metrics), and "*" for all of them
SCOPES = (*SCOPE_ROLES, "*")  # every scope the API checks, and all of them
MAX_EXPIRY_DAYS = 3650


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
              help="Scope (repeatable); a token opens only API routes with one of its scopes, and only those "
                   "the user's role may use: " + "; ".join(
                       f"{s} ({', '.join(SCOPE_ROLES[s]) + ', admin' if SCOPE_ROLES[s] else 'admin'})"
                       for s in SCOPE_ROLES) + "; * (all the role allows). A scope the role can never use is refused.")
@click.option("--expires-in", "expires_in", type=click.FloatRange(min=0, min_open=True, max=MAX_EXPIRY_DAYS),
              default=None, metavar="DAYS",
              help=f"The token stops working DAYS days from now (fractions allowed, up to {MAX_EXPIRY_DAYS}): "
                   "every request with it is then a 401 \"invalid or expired token\"; `users tokens` shows it "
                   "expired. Default: it never expires (revoke it with `users revoke`).")
@click.pass_obj
def token(settings, username: str, name: str, scopes: tuple[str, ...], expires_in: float | None) -> None:  # noqa: ANN001
    """Create an API token for USERNAME's bot; printed once, only its hash is stored."""
    if not name.strip() or len(name) > 100 or not name.isprintable():
        raise click.UsageError("--name is what the token is for: 1-100 printable characters")
    from datetime import timedelta

    from console.auth import create_api_token, roles_for_scope, token_hash, unusable_scopes
    from models import ApiToken, User
    from models.base import utcnow
    from service.audit import record

    expires_at = utcnow() + timedelta(days=expires_in) if expires_in is not None else None

    async def work(session, user: User) -> str:  # noqa: ANN001
        if unusable := unusable_scopes(user.role, scopes):  # every call would answer 403
            raise click.ClickException("; ".join(
                f"role {user.role} can never use scope {s} (it needs role {' or '.join(roles_for_scope(s))})"
                for s in unusable))
        value = await create_api_token(session, user, name, list(scopes))
        if expires_at is not None:
            row = await session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(value)))
            row.expires_at = expires_at
        record(session, "cli", "token.created", "user", user.id, name=name, scopes=list(scopes),
               **({"expires_at": expires_at.isoformat()} if expires_at else {}))
        return value

    click.echo(_with_user(settings, username, work))
    if expires_at is not None:  # on stderr: stdout is the token alone, for scripts
        click.echo(f"expires {expires_at:%Y-%m-%d %H:%M} UTC", err=True)


def _with_user(settings, username: str, work):
    """Run ``work(session, user)`` in one transaction; an unknown user or a refused change is a
    message and exit status 1, not a traceback."""
    from console.accounts import AccountError
    from models import User

    async def go():
        db = _db(settings)
        try:
            await db.upgrade()
            async with db.session() as session:
                user = await session.scalar(select(User).where(User.username == username))
                if user is None:
                    raise click.ClickException(f"no user {username!r}")
                result = await work(session, user)
                await session.commit()
                return result
        finally:
            await db.close()

    try:
        return asyncio.run(go())
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc


@users.command("tokens")
@click.argument("username")
@click.pass_obj
def tokens(settings, username: str) -> None:
    """List USERNAME's bot tokens: id, name, scopes, created, state, last used ("never" when unused;
    recorded to the minute). Never the token itself."""
    from console.accounts import tokens_of

    async def work(session, user):
        return (await tokens_of(session, [user.id])).get(user.id, [])

    rows = _with_user(settings, username, work)
    if not rows:
        click.echo(f"{username} has no tokens", err=True)
    for t in rows:
        when = f" {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else ""
        click.echo(f"{t.id}\t{t.name}\t{','.join(t.scopes)}\t{t.created_at:%Y-%m-%d %H:%M}\t{t.state}{when}"
                   f"\t{t.last_used}")


@users.command("revoke")
@click.argument("username")
@click.argument("token_name")
@click.pass_obj
def revoke(settings, username: str, token_name: str) -> None:
    """Revoke USERNAME's active tokens named TOKEN_NAME (see `users tokens`); audited. Exits 1 when
    there is none."""
    from console.accounts import revoke_named

    async def work(session, user):
        return await revoke_named(session, user, token_name, "cli")

    n = _with_user(settings, username, work)
    if not n:
        raise click.ClickException(f"{username} has no active token named {token_name!r}")
    click.echo(f"revoked {n} token(s) named {token_name} of {username}")


@users.command("role")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
@click.pass_obj
def role(settings, username: str, role: str) -> None:
    """Give USERNAME another role (audited). The last active admin cannot be demoted. Tokens keep
    their scopes, but only what the new role allows gets through."""
    from console.accounts import change_role

    async def work(session, user):
        return await change_role(session, user, role, "cli")

    changed = _with_user(settings, username, work)
    click.echo(f"{username} is now {role}" if changed else f"{username} already was {role}")
