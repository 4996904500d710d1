"""`socialcare kb`, `socialcare rules`, `socialcare incidents`: the community's knowledge base,
moderation rules and incidents from the command line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click

from models.db import Database


def _run(settings: Any, work: Callable[[Database], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        database = Database.from_settings(settings)
        try:
            await database.upgrade()
            return await work(database)
        finally:
            await database.close()

    return asyncio.run(go())


@click.group()
def kb() -> None:
    """Knowledge-base articles (Markdown with YAML front matter) and answer templates (YAML)."""


@kb.command("import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--templates", "templates_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Templates folder (default: DIRECTORY/templates, else DIRECTORY).")
@click.pass_obj
def kb_import(settings, directory: Path, templates_dir: Path | None) -> None:  # noqa: ANN001
    """Import (upsert) the *.md articles of DIRECTORY and the *.yaml templates; all or nothing.

    Every file is checked first; when any cannot be imported (not UTF-8, front matter or template
    that is not a YAML mapping, a field of the wrong type, a NUL character, a slug used twice), each
    is listed with its reason, nothing is written and the exit status is 1."""
    from community.knowledge import KnowledgeFormatError, import_folder

    tdir = templates_dir or (directory / "templates" if (directory / "templates").is_dir() else directory)
    articles_dir = directory / "kb" if (directory / "kb").is_dir() else directory

    async def work(db: Database) -> tuple[int, int]:
        async with db.session() as session:
            counts = await import_folder(session, articles_dir, tdir)
            await session.commit()
            return counts

    try:
        articles, templates = _run(settings, work)
    except KnowledgeFormatError as exc:
        raise click.ClickException(f"nothing imported: {exc}") from exc
    click.echo(f"imported {articles} articles and {templates} templates")


@click.group()
def rules() -> None:
    """Moderation rules (AutoModerator-style YAML)."""


@rules.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.pass_obj
def rules_check(settings, file: Path | None) -> None:  # noqa: ANN001
    """Validate FILE (default: the configured rules file); exit 1 naming the line and reason.

    Each rule's message_template is checked against the built-in notices and the templates in
    the database when one is configured and reachable (it is never created here); without one the
    check says so and warns instead of failing."""
    from community.moderation import BUILTIN_NOTICES
    from community.rules import BUNDLED_RULES, RuleError, load_rules, unknown_templates

    path = file or settings.moderation_rules_path or BUNDLED_RULES
    try:
        loaded = load_rules(path)
    except RuleError as exc:
        raise click.ClickException(str(exc)) from exc
    if not loaded:  # loaded by the service, it would turn automatic moderation off without a word
        raise click.ClickException(f"{path} holds no rules")
    for r in loaded:
        click.echo(f"{r.line:>4}  {r.name}  → {r.action}")
    stored, where = asyncio.run(_stored_templates(settings))
    known = set(BUILTIN_NOTICES) | (stored or set())
    checked = f"the built-in notices ({', '.join(sorted(BUILTIN_NOTICES))})"
    checked = f"{len(stored)} template(s) in the database {where} and {checked}" if stored is not None \
        else f"{checked} only: {where}"
    click.echo(f"message templates checked against {checked}")
    for r in unknown_templates(loaded, known):
        problem = (f"{path}:{r.line}: rule '{r.name}': message_template '{r.message_template}' is not a "
                   "template the service knows")
        if stored is not None:  # sent at run time, the author would get the built-in notice instead
            raise click.ClickException(f"{problem} (add it with `socialcare kb import` or fix the name)")
        click.echo(f"warning: {problem} here; make sure the database has it (`socialcare kb import`)", err=True)
    click.echo(f"{len(loaded)} rules OK in {path}")


async def _stored_templates(settings: Any) -> tuple[set[str] | None, str]:
    """The template names in the configured database, and where that is; (None, why) when there
    is no database yet or it cannot be read (checking a file must not create or migrate one)."""
    from sqlalchemy import select
    from sqlalchemy.engine import make_url

    from models import Template

    url = settings.effective_database_url
    shown = make_url(url).render_as_string(hide_password=True)
    if url.startswith("sqlite"):
        file = make_url(url).database
        if not file or file == ":memory:" or not Path(file).exists():
            return None, f"no database at {shown} yet"
    database = Database(url)
    try:
        async with database.session() as session:
            names = await asyncio.wait_for(session.scalars(select(Template.name)), timeout=10)
            return set(names), shown
    except Exception as exc:  # noqa: BLE001 - unreachable or not migrated: say so, check the rest
        return None, f"the database {shown} could not be read ({type(exc).__name__})"
    finally:
        await database.close()


@click.group()
def incidents() -> None:
    """Incidents: list them, post a status to everyone affected, close them."""


@incidents.command("list")
@click.option("--all", "show_all", is_flag=True, help="Closed incidents too.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def incidents_list(settings, show_all: bool, as_json: bool) -> None:  # noqa: ANN001
    """Open incidents (all with --all): issue type, channel, when opened, how many mentions."""
    from sqlalchemy import func, select

    from models import Incident, IncidentMention

    async def work(db: Database) -> list[dict]:
        async with db.session() as s:
            q = select(Incident, func.count(IncidentMention.mention_id)).outerjoin(
                IncidentMention, IncidentMention.incident_id == Incident.id).group_by(Incident.id).order_by(Incident.id)
            if not show_all:
                q = q.where(Incident.status == "open")
            return [{"id": i.id, "issue_type": i.issue_type, "channel": i.channel, "status": i.status,
                     "opened_at": i.opened_at.isoformat(), "mentions": n, "status_message": i.status_message}
                    for i, n in (await s.execute(q)).all()]

    rows = _run(settings, work)
    for row in rows:
        click.echo(json.dumps(row) if as_json else
                   f"#{row['id']}  {row['status']:<6} {row['issue_type']} on {row['channel']}  "
                   f"{row['mentions']} mentions  opened {row['opened_at']}")
    if not rows and not as_json:
        click.echo("no incidents")


def _broadcast(settings: Any, incident_id: int, act: Callable[..., Awaitable[Any]]) -> int:
    from community.incidents import SpikePolicy
    from community.replybot import ChannelPolicy
    from models import Incident
    from service.dispatch import Dispatcher
    from service.runtime import build_connectors

    dry = {p for p in ("x", "reddit", "discourse", *settings.bot_channels)
           if ChannelPolicy.for_channel(settings, p).dry_run}
    policy = SpikePolicy.from_settings(settings)  # who is affected: the detector's own report rule

    async def work(db: Database) -> int:
        async with db.session() as s:
            incident = await s.get(Incident, incident_id)
            if incident is None:
                raise click.ClickException(f"no incident #{incident_id}")
            _, replies = await act(s, incident, dry, policy)
            await s.commit()
        connectors = build_connectors(settings)
        try:
            await Dispatcher.for_settings(db, connectors, settings).deliver([r.id for r in replies])
        finally:
            for c in connectors:
                await c.close()
        return len(replies)

    from community.broadcast import IncidentError

    try:
        return _run(settings, work)
    except IncidentError as exc:
        raise click.ClickException(str(exc)) from exc


@incidents.command("status")
@click.argument("incident_id", type=int)
@click.argument("message")
@click.option("--actor", default="cli", show_default=True)
@click.pass_obj
def incidents_status(settings, incident_id: int, message: str, actor: str) -> None:  # noqa: ANN001
    """Post MESSAGE as the incident's status to everyone affected."""
    from community.broadcast import post_status

    n = _broadcast(settings, incident_id, lambda s, inc, dry, policy: post_status(
        s, inc, message, f"cli:{actor}", policy=policy, interval_minutes=settings.incident_status_interval_minutes,
        dry_run_channels=dry))
    click.echo(f"status queued for {n} author(s)")


@incidents.command("close")
@click.argument("incident_id", type=int)
@click.option("--no-fixed", is_flag=True, help="Close without the \"fixed\" follow-up.")
@click.option("--note", default=None)
@click.option("--actor", default="cli", show_default=True)
@click.pass_obj
def incidents_close(settings, incident_id: int, no_fixed: bool, note: str | None, actor: str) -> None:  # noqa: ANN001
    """Close the incident; everyone affected gets the "fixed" follow-up unless --no-fixed."""
    from community.broadcast import close

    n = _broadcast(settings, incident_id, lambda s, inc, dry, policy: close(
        s, inc, f"cli:{actor}", policy=policy, send_fixed=not no_fixed, note=note, dry_run_channels=dry))
    click.echo(f"incident #{incident_id} closed; follow-up queued for {n} author(s)")
