"""`socialcare connectors`: check credentials, run one poll."""

from __future__ import annotations

import asyncio
import json

import click


@click.group()
def connectors() -> None:
    """Platform connectors (X, Reddit, Discourse): check them, fetch from them."""


@connectors.command()
@click.pass_obj
def check(settings) -> None:
    """For each configured connector: do its credentials work, and what does it listen to.

    One JSON object per connector (name, ok, error, account, listens_to, base_url); exits 1 when any
    connector's credentials fail."""
    from listener.registry import build_connectors

    async def go() -> list[dict]:
        out = []
        for c in build_connectors(settings):
            try:
                out.append(await c.check())
            except Exception as exc:  # noqa: BLE001 - one broken connector must not hide the others
                out.append({"name": c.name, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
            finally:
                await c.close()
        return out

    results = asyncio.run(go())
    if not results:
        click.echo("no connector is configured: set SOCIALCARE_X_*, SOCIALCARE_REDDIT_* or SOCIALCARE_DISCOURSE_*")
        return
    for r in results:
        click.echo(json.dumps(r))
    if not all(r["ok"] for r in results):
        raise SystemExit(1)


@connectors.command()
@click.argument("name")
@click.option("--once", is_flag=True, required=True, help="Run one poll (the only mode of this command).")
@click.option("--save/--no-save", default=False, show_default=True,
              help="Move the saved cursor past what was printed. The service then never ingests those "
                   "mentions: they were only printed here.")
@click.pass_obj
def fetch(settings, name: str, once: bool, save: bool) -> None:
    """Run one poll of connector NAME (x, x-stream, reddit, discourse) from its saved cursor; print the
    mentions as JSON lines.

    A look, not a delivery: by default the cursor stays where it was, so the running service (or its
    next start) still ingests every mention printed here."""
    from listener.cursors import CursorStore
    from listener.errors import ConnectorError
    from listener.registry import connector_by_name
    from models.db import Database

    async def go() -> list:
        db = Database.from_settings(settings)
        connector = connector_by_name(settings, name)
        try:
            await db.upgrade()
            store = CursorStore(db)
            mentions, cursor = await connector.poll_once(await store.get(connector.name))
            for m in mentions:
                click.echo(json.dumps(m.contract_json(), ensure_ascii=False))
            if save:
                await store.set(connector.name, cursor)
            return mentions
        finally:
            await connector.close()
            await db.close()

    try:
        mentions = asyncio.run(go())
    except (LookupError, ConnectorError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{len(mentions)} mention(s)", err=True)
