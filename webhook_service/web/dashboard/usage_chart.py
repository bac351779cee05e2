"""The Usage page's charts, laid out here so the template only draws them as inline SVG: no script, no
inline style (the dashboard's CSP allows neither), colours from the stylesheet's `series-N` classes.

`units_chart`: a bar per UTC day of the period, the units each model spent stacked in it, with a y axis
of round numbers, day labels, a legend and the numbers on hover (each bar's <title>).
`status_chart`: the period's tasks by final status, a horizontal bar each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from webhook_service.domain.usage import FINAL_STATUSES, Period, TenantUsage

WIDTH, HEIGHT = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 40  # room for the axes' labels
SERIES = 8  # colours in the stylesheet; more models than that share them, the legend tells which
DAY_LABELS = 8  # about this many day labels under the bars, however long the period
Y_TICKS = 4  # at most this many steps up the y axis
STATUS_ROW, STATUS_LABEL, STATUS_WIDTH = 30, 72, 320


@dataclass(frozen=True)
class Segment:
    """One model's part of one day's bar."""

    x: float
    y: float
    width: float
    height: float
    series: int
    title: str


@dataclass(frozen=True)
class Bar:
    day: str
    units: float
    title: str  # the day's total, on hover anywhere in the day's column outside its segments
    x: float
    width: float
    segments: list[Segment]


@dataclass(frozen=True)
class Label:
    at: float
    text: str


@dataclass(frozen=True)
class LegendEntry:
    model: str
    series: int
    units: float
    tasks: int


@dataclass(frozen=True)
class UnitsChart:
    width: int
    height: int
    left: int
    top: int
    right: float  # the plot area's right edge
    bottom: float  # the plot area's bottom edge (the x axis)
    bars: list[Bar]
    y_ticks: list[Label]
    x_labels: list[Label]
    legend: list[LegendEntry]


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


def round_up(value: float) -> float:
    """The smallest round number (1, 2, 2.5 or 5 times a power of ten) at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value)


def units(value: float) -> str:
    return f"{value:,.3f}".rstrip("0").rstrip(".")


def units_chart(usage: TenantUsage, within: Period) -> UnitsChart:
    models = list(usage.models)
    series = {model: n % SERIES for n, model in enumerate(models)}
    by_day = {day.day: day for day in usage.days}
    days = within.days()
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM
    slot = (right - LEFT) / len(days)
    width = max(1.0, slot * 0.72)
    peak = max((day.total.units for day in usage.days), default=0)
    step = round_up(peak / Y_TICKS)  # a round step, and as many of them as the highest bar needs
    steps = max(1, math.ceil(peak / step - 1e-9))
    scale = (bottom - TOP) / (steps * step)
    bars = []
    for n, day in enumerate(days):
        used = by_day.get(day)
        if used is None or not used.total.milliunits:
            continue
        x = LEFT + n * slot + (slot - width) / 2
        y = float(bottom)
        segments = []
        for model, tally in used.models.items():
            if tally.milliunits <= 0:
                continue
            height = tally.units * scale
            y -= height
            title = f"{day} · {model}: {units(tally.units)} units, {_tasks(tally.tasks)}"
            segments.append(Segment(_px(x), _px(y), _px(width), _px(height), series[model], title))
        total = used.total
        title = f"{day}: {units(total.units)} units, {_tasks(total.tasks)}"
        bars.append(Bar(day.isoformat(), total.units, title, _px(x), _px(width), segments))
    y_ticks = [Label(_px(bottom - k * step * scale), units(k * step)) for k in range(steps + 1)]
    every = max(1, math.ceil(len(days) / DAY_LABELS))
    x_labels = [
        Label(_px(LEFT + n * slot + slot / 2), day.strftime("%b %d"))
        for n, day in enumerate(days)
        if (len(days) - 1 - n) % every == 0  # counted back from the last day, which is always labelled
    ]
    legend = [
        LegendEntry(model, series[model], tally.units, tally.total) for model, tally in usage.models.items()
    ]
    return UnitsChart(WIDTH, HEIGHT, LEFT, TOP, right, bottom, bars, y_ticks, x_labels, legend)


def status_chart(usage: TenantUsage) -> StatusChart:
    tasks = usage.total.tasks
    longest = max(max(tasks.values()), 1)
    room = STATUS_WIDTH - STATUS_LABEL - 48  # the count is written after the bar
    rows = [
        StatusRow(
            status.value, tasks[status.value], n * STATUS_ROW, _px(room * tasks[status.value] / longest)
        )
        for n, status in enumerate(FINAL_STATUSES)
    ]
    return StatusChart(STATUS_WIDTH, STATUS_ROW * len(rows), STATUS_LABEL, rows)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _px(value: float) -> float:
    return round(value, 2)


def _tasks(tasks: dict[str, int]) -> str:
    counted = [f"{count} {status}" for status, count in tasks.items() if count]
    total = sum(tasks.values())
    return plural(total, "task") + (f" ({', '.join(counted)})" if counted else "")
