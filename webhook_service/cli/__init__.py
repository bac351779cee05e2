"""`flask` commands for operators: submit a task and follow it, list and inspect tasks and deliveries,
replay deliveries, follow a tenant's event log, record again the tasks a lost Redis took along, show
who spent the account's units, run the Kling simulator, manage clients' credentials, seal the stored
secrets again after SECRET_KEY changed.

They call the service's own code against Redis and Kling directly, not its HTTP API, so they work
while the web process is down and need no client credentials (but for `flask events tail --url`, which
follows the API as a pipeline does: cli/events_http.py). Exit codes are for scripts:
0 done, 1 the task failed (or was rejected, expired, or its archive failed) or a delivery was not
found, 2 a usage or validation error, 3 Redis or Kling unavailable.
"""

from __future__ import annotations

import logging

import click
from flask import Flask


def register_cli(app: Flask) -> None:
    from webhook_service.cli.clients import clients
    from webhook_service.cli.deliveries import deliveries, replay_failed
    from webhook_service.cli.events import events
    from webhook_service.cli.recover import recover
    from webhook_service.cli.secrets import secrets
    from webhook_service.cli.simulator import simulator
    from webhook_service.cli.submit import submit
    from webhook_service.cli.tasks import tasks
    from webhook_service.cli.usage import usage

    commands = (submit, tasks, deliveries, replay_failed, events, recover, simulator, usage, clients, secrets)
    for command in commands:
        add_verbose_flag(command)
        app.cli.add_command(command)


def add_verbose_flag(command: click.Command) -> None:
    """Give the command (each command of a group) `-v`/`--verbose`. A command's output is for a person:
    the service's INFO log lines (each request to Kling, each change of a task), JSON on stderr, buried
    it. So a command shows only warnings and errors in the log, unless -v asks for the rest."""
    if isinstance(command, click.Group):
        for subcommand in command.commands.values():
            add_verbose_flag(subcommand)
        return
    if any(param.name == "verbose" for param in command.params):
        return  # given by an app built before in this process: the commands are the module's own
    command.params.append(
        click.Option(
            ["-v", "--verbose"],
            is_flag=True,
            expose_value=False,
            callback=_log_level,
            help="Also show the service's INFO log lines (JSON, on stderr).",
        )
    )


def _log_level(ctx: click.Context, _param: click.Parameter, verbose: bool) -> None:
    """Called for every run, flag given or not (click calls a parameter's callback with its default);
    the level before is back once the command is done (a command run in a test's process)."""
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    ctx.call_on_close(lambda: root.setLevel(before))
