"""The ``socialcare`` command line. Each concept's commands live in their own module."""

from __future__ import annotations

import sys

import click

from service.settings import load_settings


class _Cli(click.Group):
    """Operational failures (a database, bus or service that does not answer, a file that cannot be
    read or written, a model directory without heads) end in one clear line and a non-zero exit, not
    a traceback; the traceback goes to the debug log (SOCIALCARE_LOG_LEVEL=DEBUG)."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201
        from sqlalchemy.exc import SQLAlchemyError

        from service.bus.base import BusUnavailable

        try:
            return super().invoke(ctx)
        except (OSError, SQLAlchemyError, BusUnavailable) as exc:
            import logging

            from triage.pii import redact

            logging.getLogger("socialcare.cli").debug("command failed", exc_info=True)
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise click.ClickException(redact(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)) from None


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", type=click.Path(dir_okay=False), default=None,
              help="TOML settings file (default: $SOCIALCARE_CONFIG). Secrets come from the environment only.")
@click.version_option(package_name="socialcare")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """socialcare: social listening and community moderation for customer-care teams.

    Settings come from SOCIALCARE_* environment variables and an optional TOML file; see README.
    """
    try:
        settings = load_settings(config)
    except Exception as exc:  # a clear message, not a traceback
        raise click.ClickException(f"invalid settings: {exc}") from exc
    ctx.obj = settings
    from service.logs import configure_logging

    configure_logging(settings)


def _register() -> None:
    from service.cli import (
        community_cmd,
        connectors_cmd,
        db_cmd,
        deadletter_cmd,
        digest_cmd,
        privacy_cmd,
        replay_cmd,
        run_cmd,
        triage_cmd,
        users_cmd,
        worker_cmd,
    )

    main.add_command(db_cmd.db)
    main.add_command(run_cmd.run)
    main.add_command(worker_cmd.worker)  # with its health + metrics server
    main.add_command(run_cmd.web_cmd)
    main.add_command(run_cmd.listen)
    main.add_command(replay_cmd.replay)
    main.add_command(triage_cmd.triage)
    main.add_command(connectors_cmd.connectors)
    main.add_command(deadletter_cmd.deadletter)
    main.add_command(users_cmd.users)
    main.add_command(digest_cmd.digest)
    main.add_command(privacy_cmd.privacy)
    for group in (community_cmd.kb, community_cmd.rules, community_cmd.incidents):
        main.add_command(group)


_register()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
