"""The Tasks page's activity panel: the last 24 hours (domain/activity.py) hour by hour, as two stacked
bar charts (charts.py): the tasks that reached a final status, by status, and the delivery attempts,
delivered or not (the Endpoints page draws each endpoint's attempts the same way). The current hour is
the last column, and fills as the hour goes on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from webhook_service.domain.activity import Hour
from webhook_service.web.dashboard.charts import (
    BarChart,
    Column,
    LegendEntry,
    Part,
    by_status,
    plural,
    stacked,
)

SIZE = (600, 220)  # half the page's width, beside each other


class DeliveryShare:
    """Delivery attempts and how many delivered (the Tasks page's panel, an endpoint's), with the share
    that did. The classes that take it on declare both as their fields."""

    attempts: int
    delivered: int

    @property
    def success(self) -> str:
        return share(self.delivered, self.attempts)


@dataclass(frozen=True)
class Activity(DeliveryShare):
    tasks: BarChart
    deliveries: BarChart
    finished: int  # tasks that reached a final status in the period
    attempts: int
    delivered: int


def count(value: float) -> str:
    return f"{round(value):,}"


def share(delivered: int, attempts: int) -> str:
    """The share of attempts that delivered, in whole percent ("" without attempts)."""
    return f"{100 * delivered / attempts:.0f}%" if attempts else ""


def activity_panel(hours: list[Hour]) -> Activity:
    tasks = {status: sum(hour.tasks[status] for hour in hours) for status in hours[0].tasks}
    task_legend = [LegendEntry(status, f"status-fill-{status}", count(n)) for status, n in tasks.items()]
    delivered = sum(hour.delivered for hour in hours)
    return Activity(
        stacked([_task_column(hour) for hour in hours], task_legend, count, whole=True, size=SIZE),
        attempts_chart(hours, SIZE),
        sum(tasks.values()),
        sum(hour.attempts for hour in hours),
        delivered,
    )


def attempts_chart(hours: list[Hour], size: tuple[int, int]) -> BarChart:
    """Delivery attempts per hour, delivered and failed: the Tasks page's, and each endpoint's."""
    delivered = sum(hour.delivered for hour in hours)
    failed = sum(hour.failed for hour in hours)
    legend = [
        LegendEntry("delivered", "delivery-fill-delivered", count(delivered)),
        LegendEntry("failed", "delivery-fill-failed", count(failed)),
    ]
    return stacked([_delivery_column(hour) for hour in hours], legend, count, whole=True, size=size)


def _span(hour: Hour) -> str:
    return f"{hour.start:%H:%M} to {hour.start + timedelta(hours=1):%H:%M} UTC"


def _column(hour: Hour, title: str, parts: list[Part]) -> Column:
    return Column(hour.start.strftime("%Y-%m-%dT%H:00Z"), f"{hour.start:%H:%M}", title, parts)


def _task_column(hour: Hour) -> Column:
    span = _span(hour)
    parts = [Part(n, f"status-fill-{status}", f"{span} · {n} {status}") for status, n in hour.tasks.items()]
    return _column(hour, f"{span}: {by_status(hour.tasks)}", parts)


def _delivery_column(hour: Hour) -> Column:
    span = _span(hour)
    parts = [
        Part(hour.delivered, "delivery-fill-delivered", f"{span} · {hour.delivered} delivered"),
        Part(hour.failed, "delivery-fill-failed", f"{span} · {hour.failed} failed"),
    ]
    delivered = f", {ratio} delivered" if (ratio := share(hour.delivered, hour.attempts)) else ""
    return _column(hour, f"{span}: {plural(hour.attempts, 'attempt')}{delivered}", parts)
