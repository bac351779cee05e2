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
        app.cli.add_command(command)
