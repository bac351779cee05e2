"""`flask usage`: which tenant's tasks spent the account's units, per UTC day and model, as a table.

The same numbers as `GET /v1/usage` (domain/usage.py); the operator's command sees every tenant.
"""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from webhook_service.cli.common import EXIT_USAGE, CommandFailed, echo_json, echo_table, guarded, services
from webhook_service.domain.tenants import EVERYONE
from webhook_service.domain.usage import FINAL_STATUSES, BadUsageQuery, Tally, report


@click.command("usage")
@click.option("--from", "first", help="First UTC day, YYYY-MM-DD (default: 29 days before --to).")
@click.option("--to", "last", help="Last UTC day, YYYY-MM-DD (default: today); at most 366 days in all.")
@click.option("--tenant", help="One tenant only (default: every tenant with usage).")
@click.option("--json", "as_json", is_flag=True, help="The API's JSON instead of a table.")
@with_appcontext
@guarded
def usage(first: str | None, last: str | None, tenant: str | None, as_json: bool) -> None:
    """Tasks by final status and Kling units, per tenant, UTC day (a task's creation day) and model."""
    svc = services()
    try:
        found = report(svc.redis, svc.keys, EVERYONE, first=first, last=last, tenant=tenant)
    except BadUsageQuery as error:
        raise CommandFailed(f"--{error.field}: {error}", EXIT_USAGE) from None
    if as_json:
        echo_json(found.view())
        return
    rows = [
        _row(used.tenant, day.day.isoformat(), model, tally)
        for used in found.tenants
        for day in used.days
        for model, tally in day.models.items()
    ]
    rows += [_row(used.tenant, "total", "", used.total) for used in found.tenants if used.days]
    click.echo(f"{found.period.first} to {found.period.last} (UTC days on which the tasks were created)")
    echo_table(rows, ["tenant", "day", "model", *(s.value for s in FINAL_STATUSES), "units"])


def _row(tenant: str, day: str, model: str, tally: Tally) -> list[str]:
    return [tenant, day, model, *(str(tally.tasks[s.value]) for s in FINAL_STATUSES), f"{tally.units:g}"]
