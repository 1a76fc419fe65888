"""The ``stalwart`` command group; each command lives in a module of its own, loaded on use."""

from __future__ import annotations

import importlib
import importlib.util

import click

# command name -> module exposing ``command`` (a click.Command). Loaded lazily so that
# ``stalwart status`` does not import the worker, the dashboard or a backend it does not use.
COMMANDS = {
    "worker": "stalwart.cli.worker",
    "status": "stalwart.cli.status",
    "dead": "stalwart.cli.dead",
    "enqueue": "stalwart.cli.enqueue",
    "doctor": "stalwart.cli.doctor",
    "health": "stalwart.cli.health",
    "migrate": "stalwart.cli.migrate",
    "demo": "stalwart.cli.demo",
    "dashboard": "stalwart.cli.dashboard",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if importlib.util.find_spec(COMMANDS[name]))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMANDS.get(cmd_name)
        if module_name is None or importlib.util.find_spec(module_name) is None:
            return None
        command: click.Command = importlib.import_module(module_name).command
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stalwart")
def cli() -> None:
    """stalwart: background tasks that are never lost."""
