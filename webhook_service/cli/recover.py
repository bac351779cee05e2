"""`flask recover [--since 30d]`: after Redis was lost or flushed, the tasks Kling has are recorded
again from Kling's own lists (one per /v1 task type, and the unified API's `POST /tasks` for every
unified type), and the videos of finished ones archived (domain/recovery.py says what comes back and
from where).

Safe to run twice, or while the service runs: a task already recorded is only brought up to date, a
video already in the archive (by key and sha256) is never fetched again, and an archive job already
waiting is not queued a second time. The archive jobs need `python -m workers` running.
"""

from __future__ import annotations

from collections import Counter

import click
from flask.cli import with_appcontext

from webhook_service.cli.common import EXIT_UNAVAILABLE, CommandFailed, guarded, services, when
from webhook_service.domain.clock import parse_since
from webhook_service.domain.recovery import Archive, Found, kling_tasks_since, recover_from_kling
from webhook_service.integrations.kling import KlingError

FOUND = "found"


@click.command("recover")
@click.option(
    "--since",
    default="30d",
    show_default=True,
    help="How far back Kling's list is read: ISO 8601 time, or a duration back from now: 12h, 7d.",
)
@with_appcontext
@guarded
def recover(since: str) -> None:
    """Record again the tasks Redis lost, from Kling's list, and archive their videos."""
    try:
        since_ms = parse_since(since)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--since") from None
    svc = services()
    counts: Counter[str] = Counter()
    try:
        for type_name, data in kling_tasks_since(svc, since_ms):
            recovered = recover_from_kling(svc, data, type_name)
            counts.update([FOUND, recovered.found.value])
            if recovered.archive is not None:
                counts[recovered.archive.value] += 1
    except KlingError as error:
        _summary(counts, since_ms)
        raise CommandFailed(f"Kling's list is unavailable: {error}", EXIT_UNAVAILABLE) from None
    _summary(counts, since_ms)


def _summary(counts: Counter[str], since_ms: int) -> None:
    click.echo(f"{FOUND}: {counts[FOUND]} tasks at Kling created since {when(since_ms)} UTC")
    for line in [*Found, *Archive]:
        click.echo(f"{line.value}: {counts[line.value]}")
