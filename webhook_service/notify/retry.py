"""When to try a failed delivery again: the schedule with jitter, and `Retry-After` within bounds.

Jitter (±20 %, as the jobs' retries have it: jobs.jittered) spreads the retries of many deliveries that
failed together (a receiver's outage) so they do not all come back at the same second. `Retry-After` (on
429 and 503) is a receiver asking for time: it is honoured, but never shortens the schedule (a receiver
cannot make us hammer it) and never waits longer than an hour (a receiver cannot park a delivery for days
with one header).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from webhook_service.jobs import jittered

RETRY_AFTER_MAX_S = 3600.0
RETRY_AFTER_STATUSES = frozenset({429, 503})


def next_delay(schedule: tuple[float, ...], tries: int, retry_after_s: float | None = None) -> float | None:
    """Seconds to wait after the `tries`-th failed attempt, or None when the schedule is exhausted."""
    if tries > len(schedule):
        return None
    delay = jittered(schedule[tries - 1])
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, RETRY_AFTER_MAX_S))
    return delay


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds: either delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
