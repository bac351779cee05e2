"""`flask deliveries list|replay`: what was sent where, and sending dead letters again.

`flask replay-failed --since 2h` is the same replay under its older name, for the operator who fixed
a receiver and wants what it missed; `--endpoint ep_...` narrows a list or a replay to one tenant's
endpoint, the recovery once that endpoint is fixed.
"""

from __future__ import annotations

import click
from flask.cli import AppGroup, with_appcontext

from webhook_service.cli.common import (
    EXIT_FAILED,
    CommandFailed,
    echo_json,
    echo_table,
    guarded,
    services,
    when,
)
from webhook_service.domain.clock import parse_since
from webhook_service.domain.errors import NotReplayable
from webhook_service.notify.records import DeliveryStatus

REPLAY_STATUS = click.option(
    "--status",
    type=click.Choice(["failed", "skipped"]),
    default="failed",
    show_default=True,
    help="With --since: failed (dead letters), or skipped (never sent: their endpoint was disabled).",
)

ENDPOINT = click.option("--endpoint", help="Only the deliveries to this tenant's endpoint (ep_...).")

deliveries = AppGroup("deliveries", help="List notification deliveries and replay failed ones.")


def _endpoint(endpoint: str | None) -> str | None:
    """The endpoint named, which must exist (any tenant's: the CLI is the operator's)."""
    if endpoint is not None and services().endpoints.get(endpoint) is None:
        raise CommandFailed(f"no endpoint {endpoint!r}", EXIT_FAILED)
    return endpoint


@deliveries.command("list")
@click.option("--status", type=click.Choice([s.value for s in DeliveryStatus]), help="failed: dead letters.")
@click.option("--task", "task_ref", help="Only this task's deliveries (external_task_id).")
@ENDPOINT
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@guarded
def list_deliveries(
    status: str | None, task_ref: str | None, endpoint: str | None, limit: int, as_json: bool
) -> None:
    """Newest first (dead letters: by when they failed)."""
    found = services().deliveries.list(
        status=DeliveryStatus(status) if status else None,
        task=task_ref,
        limit=limit,
        endpoint=_endpoint(endpoint),
    )
    if as_json:
        echo_json([delivery.view() for delivery in found])
        return
    rows = [
        [
            when(d.updated_at),
            d.status.value,
            d.sink.value,
            d.event_type,
            d.external_task_id,
            d.id,
            d.last_error or "",
        ]
        for d in found
    ]
    echo_table(
        rows, ["updated (UTC)", "status", "sink", "event", "external_task_id", "delivery", "last error"]
    )


@deliveries.command("replay")
@click.argument("delivery_id", required=False)
@click.option("--since", help="Every failed delivery since: ISO 8601 time, or a duration back: 30m, 2h, 1d.")
@REPLAY_STATUS
@ENDPOINT
@guarded
def replay(delivery_id: str | None, since: str | None, status: str, endpoint: str | None) -> None:
    """Send one delivery (by id), or all that failed since a time, again with the same webhook-id."""
    if bool(delivery_id) == bool(since):
        raise click.UsageError("give either a delivery id or --since, not both")
    if delivery_id and endpoint:
        raise click.UsageError("--endpoint goes with --since, not with a delivery id")
    if delivery_id:
        store = services().deliveries
        try:
            delivery = store.replay(delivery_id)
        except NotReplayable as error:
            raise CommandFailed(str(error), EXIT_FAILED) from None
        if delivery is None:
            raise CommandFailed(f"no delivery {delivery_id!r}", EXIT_FAILED)
        click.echo(f"replaying {delivery.id} ({delivery.event_type} to {delivery.view()['target']})")
        return
    _replay_since(since or "", status, endpoint)


@click.command("replay-failed")
@click.option("--since", required=True, help="ISO 8601 time, or a duration back from now: 30m, 2h, 1d.")
@REPLAY_STATUS
@ENDPOINT
@with_appcontext
@guarded
def replay_failed(since: str, status: str, endpoint: str | None) -> None:
    """Send the deliveries that failed since a time again, with the same webhook-id."""
    _replay_since(since, status, endpoint)


def _replay_since(since: str, status: str, endpoint: str | None) -> None:
    try:
        since_ms = parse_since(since)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--since") from None
    store, only = services().deliveries, _endpoint(endpoint)
    replayed, refused = store.replay_since(since_ms, DeliveryStatus(status), endpoint=only)
    for refused_id, why in refused.items():
        click.echo(f"not replayed {refused_id}: {why}", err=True)
    click.echo(f"replayed {len(replayed)} {status} deliveries since {since}")
