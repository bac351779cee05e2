"""`flask events tail`: follow a tenant's event log (notify/event_log.py), one line of JSON per event.

What `GET /v1/events` and its stream read, from Redis directly, so it needs neither the web process nor
a key: an operator watching a tenant's tasks go by, or a script on the server that reads the log. With
`--url` (and a client key) it follows the HTTP API instead, as a pipeline does (cli/events_http.py).
"""

from __future__ import annotations

import json
import math

import click
from flask.cli import AppGroup

from webhook_service.cli.common import EXIT_USAGE, CommandFailed, guarded, services
from webhook_service.cli.events_http import (
    joined,
    key_option,
    stop_options,
    tail_over_http,
    types_option,
    url_option,
)
from webhook_service.domain.tenants import DEFAULT_TENANT
from webhook_service.notify.event_log import BadEventQuery, parse_types
from webhook_service.services import redis_connection
from webhook_service.tenant_names import NAME_RULE, valid_name

PAGE = 500
TICK_S = 5.0  # how long one wait in Redis lasts when nothing comes (and no --until-idle says otherwise)

events = AppGroup("events", help="The tenants' event logs.")


@events.command("tail")
@url_option
@key_option
@click.option(
    "--tenant", help=f"Whose log: one tenant's (default: {DEFAULT_TENANT}; with --url, the key's own)."
)
@types_option
@click.option(
    "--after",
    help="Start after this cursor; 0-0: from the start of what is kept (default: from now on; with --url, "
    "from the start).",
)
@stop_options
@guarded
def tail(
    url: str | None,
    key: str | None,
    tenant: str | None,
    types: tuple[str, ...],
    after: str | None,
    count: int | None,
    until_idle: float | None,
) -> None:
    """Each event as it is recorded, as a line of JSON (as GET /v1/events shows it); Ctrl-C ends it."""
    if url:
        tail_over_http(
            url, key, tenant=tenant, types=joined(types), after=after, count=count, until_idle=until_idle
        )
        return
    tenant = tenant or DEFAULT_TENANT
    if not valid_name(tenant):
        raise CommandFailed(f"--tenant: {tenant!r} is not a tenant name ({NAME_RULE})", EXIT_USAGE)
    log = services().events
    try:
        wanted = parse_types(joined(types))
        start = log.cursor(tenant, after) if after else log.newest(tenant)
    except BadEventQuery as error:
        raise CommandFailed(f"--{error.field}: {error}", EXIT_USAGE) from None
    tick_s = until_idle or TICK_S
    waiting = redis_connection(services().settings, read_timeout_s=tick_s + 5)
    shown = 0
    try:
        for page in log.follow(waiting, tenant, start, wanted, limit=PAGE, deadline=math.inf, tick_s=tick_s):
            if until_idle and not page.events:
                return
            for event in page.events:
                click.echo(json.dumps(event, ensure_ascii=False))
                shown += 1
                if shown == count:
                    return
    except KeyboardInterrupt:
        return  # Ctrl-C is how a tail ends: not an error
    finally:
        waiting.close()
