"""Every command and sub-command of ``socialcare`` answers ``--help`` with its own description."""

from __future__ import annotations

import click
from click.testing import CliRunner

from service.cli import main


def commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        yield path + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from commands(cmd, path + (name,))


def test_every_command_has_help_and_a_description():
    found = list(commands(main))
    names = {" ".join(p) for p, _ in found}
    assert {"run", "db upgrade", "replay", "worker", "web", "listen", "triage score", "triage train",
            "triage eval", "connectors check", "connectors fetch", "deadletter list", "deadletter retry", "deadletter discard",
            "users add", "users tokens", "users revoke", "users role", "digest"} <= names
    runner = CliRunner()
    for path, cmd in found:
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage: main " + " ".join(path) in result.output or "Usage: " in result.output
        assert (cmd.help or cmd.short_help or "").strip(), f"{' '.join(path)} has no description"
        assert cmd.help.strip().split("\n")[0][:30] in " ".join(result.output.split())
