"""Stacked bar charts, laid out here so the templates only draw them as inline SVG (_macros.html's
`bar_chart`): no script, no inline style (the dashboard's CSP allows neither), each part coloured by a
class from the stylesheet, the numbers on hover in each segment's and each column's <title>.

A chart is a row of columns (a day, an hour), the parts of each stacked in it, under a y axis of round
numbers and above a label every so many columns (the last column always has one). An empty column
draws nothing but keeps its place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

WIDTH, HEIGHT = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 40  # room for the axes' labels
Y_TICKS = 4  # at most this many steps up the y axis
X_LABELS = 8  # about this many labels under the columns, however many columns


@dataclass(frozen=True)
class Part:
    """One series' value in one column, and how it is drawn: its class and its hover text."""

    value: float
    css: str
    title: str


@dataclass(frozen=True)
class Column:
    key: str  # what the column is, for its bar's data attribute: a day, an hour
    label: str  # under the x axis, when the column has one
    title: str  # the column's hover text: its total
    parts: list[Part]

    @property
    def total(self) -> float:
        return sum(part.value for part in self.parts if part.value > 0)


@dataclass(frozen=True)
class Segment:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True)
class Bar:
    key: str
    total: str  # the column's total, as the chart writes numbers
    title: str  # on hover anywhere in the column outside its segments
    x: float
    width: float
    segments: list[Segment]


@dataclass(frozen=True)
class Label:
    at: float
    text: str


@dataclass(frozen=True)
class LegendEntry:
    name: str
    css: str
    detail: str


@dataclass(frozen=True)
class BarChart:
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


def round_up(value: float, whole: bool = False) -> float:
    """The smallest round number (1, 2, 2.5 or 5 times a power of ten) at or above `value`; `whole`, for
    counts: a whole number, without the 2.5s."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    steps = (1, 2, 5, 10) if whole else (1, 2, 2.5, 5, 10)
    found = next(step * power for step in steps if step * power >= value)
    return max(1.0, found) if whole else found


def stacked(
    columns: list[Column],
    legend: list[LegendEntry],
    number: Callable[[float], str],
    *,
    whole: bool = False,
    size: tuple[int, int] = (WIDTH, HEIGHT),
) -> BarChart:
    """The chart of `columns`, left to right; `number` writes the axis's and the totals' numbers, and
    `whole` keeps the axis's steps whole (counts)."""
    width, height = size
    right, bottom = width - RIGHT, height - BOTTOM
    slot = (right - LEFT) / max(1, len(columns))
    bar_width = max(1.0, slot * 0.72)
    peak = max((column.total for column in columns), default=0)
    step = round_up(peak / Y_TICKS, whole)  # a round step, and as many of them as the highest bar needs
    steps = max(1, math.ceil(peak / step - 1e-9))
    scale = (bottom - TOP) / (steps * step)
    bars = []
    for n, column in enumerate(columns):
        if column.total <= 0:
            continue
        x = LEFT + n * slot + (slot - bar_width) / 2
        y = float(bottom)
        segments = []
        for part in column.parts:
            if part.value <= 0:
                continue
            part_height = part.value * scale
            y -= part_height
            segments.append(Segment(px(x), px(y), px(bar_width), px(part_height), part.css, part.title))
        bars.append(Bar(column.key, number(column.total), column.title, px(x), px(bar_width), segments))
    y_ticks = [Label(px(bottom - k * step * scale), number(k * step)) for k in range(steps + 1)]
    every = max(1, math.ceil(len(columns) / X_LABELS))
    x_labels = [
        Label(px(LEFT + n * slot + slot / 2), column.label)
        for n, column in enumerate(columns)
        if (len(columns) - 1 - n) % every == 0  # counted back from the last column, always labelled
    ]
    return BarChart(width, height, LEFT, TOP, right, bottom, bars, y_ticks, x_labels, legend)


def px(value: float) -> float:
    """A coordinate as the charts write them: to a hundredth of a pixel."""
    return round(value, 2)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def by_status(tasks: dict[str, int]) -> str:
    """Tasks by final status, as the hover texts write them: `3 tasks (2 succeed, 1 failed)`."""
    counted = [f"{count} {status}" for status, count in tasks.items() if count]
    total = sum(tasks.values())
    return plural(total, "task") + (f" ({', '.join(counted)})" if counted else "")
