"""The Usage page's charts, laid out here so the template only draws them as inline SVG: no script, no
inline style (the dashboard's CSP allows neither), colours from the stylesheet's classes.

`units_chart`: a bar per UTC day of the period, the units each model spent stacked in it (charts.py),
each model in one of the stylesheet's `series-N` colours, with a legend.
`status_chart`: the period's tasks by final status, a horizontal bar each.
"""

from __future__ import annotations

from dataclasses import dataclass

from webhook_service.domain.usage import FINAL_STATUSES, Period, TenantUsage
from webhook_service.web.dashboard.charts import (
    BarChart,
    Column,
    LegendEntry,
    Part,
    by_status,
    plural,
    px,
    stacked,
)

SERIES = 8  # colours in the stylesheet; more models than that share them, the legend tells which
STATUS_ROW, STATUS_LABEL, STATUS_WIDTH = 30, 72, 320


@dataclass(frozen=True)
class StatusRow:
    status: str
    count: int
    y: float
    width: float


@dataclass(frozen=True)
class StatusChart:
    width: int
    height: int
    label_width: int
    rows: list[StatusRow]


def units(value: float) -> str:
    return f"{value:,.3f}".rstrip("0").rstrip(".")


def units_chart(usage: TenantUsage, within: Period) -> BarChart:
    series = {model: f"series-{n % SERIES}" for n, model in enumerate(usage.models)}
    by_day = {day.day: day for day in usage.days}
    columns = []
    for day in within.days():
        used = by_day.get(day)
        parts = [
            Part(
                tally.units,
                series[model],
                f"{day} · {model}: {units(tally.units)} units, {by_status(tally.tasks)}",
            )
            for model, tally in (used.models.items() if used else ())
        ]
        title = f"{day}: {units(used.total.units)} units, {by_status(used.total.tasks)}" if used else ""
        columns.append(Column(day.isoformat(), day.strftime("%b %d"), title, parts))
    legend = [
        LegendEntry(model, series[model], f"{units(tally.units)} units · {plural(tally.finished, 'task')}")
        for model, tally in usage.models.items()
    ]
    return stacked(columns, legend, units)


def status_chart(usage: TenantUsage) -> StatusChart:
    tasks = usage.total.tasks
    longest = max(max(tasks.values()), 1)
    room = STATUS_WIDTH - STATUS_LABEL - 48  # the count is written after the bar
    rows = [
        StatusRow(status.value, tasks[status.value], n * STATUS_ROW, px(room * tasks[status.value] / longest))
        for n, status in enumerate(FINAL_STATUSES)
    ]
    return StatusChart(STATUS_WIDTH, STATUS_ROW * len(rows), STATUS_LABEL, rows)
