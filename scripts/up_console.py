"""What scripts/up shows on its terminal: a line per step and per event for a person, or JSON lines.

The processes' own logs are JSON lines for machines (webhook_service/integrations/logs.py), some 70 of
them for one demo, RQ's housekeeping among them. A newcomer needs the dozen that say what happened and
where to look next, so by default the children's lines go to data/logs/ (up_children.py) and the
console shows up's summary, the errors the children log, and how many warnings (a first start has
some: no periodic work scheduled yet, an API without client keys). LOG_FORMAT=json is production's
view: every child's raw line, and up's own as JSON lines too, so one log shipper reads them all.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

LABEL_WIDTH = 10
# SGR codes; a colour is only ever painted on a terminal that wants it (Console.from_env).
_PAINT = {"step": "32", "event": "36", "warn": "33", "error": "31", "dim": "2", "head": "1"}
_LEVELS = {"step": "INFO", "event": "INFO", "warn": "WARNING", "error": "ERROR"}
_ERRORS = frozenset({"ERROR", "CRITICAL"})


class Console:
    """Thread-safe: the children's relays and the webhook receiver print from their own threads."""

    def __init__(self, *, json_lines: bool, colour: bool) -> None:
        self.json_lines = json_lines
        self.colour = colour
        self.warnings: Counter[str] = Counter()  # by process
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> Console:
        """LOG_FORMAT=text (the default) or json; colours only on a terminal, and never with NO_COLOR."""
        log_format = os.environ.get("LOG_FORMAT", "").strip().lower() or "text"
        if log_format not in ("text", "json"):
            sys.exit(f"LOG_FORMAT: expected text or json, got {log_format!r}")
        json_lines = log_format == "json"
        colour = not json_lines and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        return cls(json_lines=json_lines, colour=colour)

    def step(self, label: str, message: str) -> None:
        self._line("step", label, message)

    def event(self, label: str, message: str) -> None:
        self._line("event", label, message)

    def warn(self, label: str, message: str) -> None:
        self._line("warn", label, message)

    def error(self, label: str, message: str) -> None:
        self._line("error", label, message)

    def child_line(self, name: str, line: str) -> None:
        """A line a child wrote (its log file has it already): as it is with JSON lines; otherwise an
        error in a line, and a warning only counted."""
        if self.json_lines:
            self._print(line)
            return
        level = (_record(line) or {}).get("level")
        if level in _ERRORS:
            self.error(name, readable(line))
        elif level == "WARNING":
            with self._lock:
                self.warnings[name] += 1

    def warnings_noted(self) -> str:
        """The warnings logged so far, by process, for the summary: "; warnings: web 1, worker.2 2"."""
        with self._lock:
            counted = ", ".join(f"{name} {count}" for name, count in sorted(self.warnings.items()))
        return f"; warnings: {counted}" if counted else ""

    def died(self, name: str, code: int, last_lines: Iterable[str], log_file: str) -> None:
        """A child that exited by itself: said clearly, with its last lines (already shown as JSON)."""
        self.error(name, f"exited with code {code}; its last lines (all of them in {log_file}):")
        if not self.json_lines:
            for line in last_lines:
                self._print(f"    {self._paint('dim', readable(line))}")

    def summary(self, title: str, rows: list[tuple[str, str]]) -> None:
        """The closing block, a row per place to look."""
        if self.json_lines:
            for name, value in rows:
                self.step("up", f"{name}: {value}")
            return
        self._print(f"\n{self._paint('head', title)}")
        for name, value in rows:
            self._print(f"  {name:<{LABEL_WIDTH}} {value}")

    def _line(self, kind: str, label: str, message: str) -> None:
        if self.json_lines:
            time = datetime.now(UTC).isoformat(timespec="milliseconds")
            record = {"time": time, "level": _LEVELS[kind], "logger": "scripts.up", "process": label}
            self._print(json.dumps({**record, "message": message}, ensure_ascii=False))
        else:
            self._print(f"{self._paint(kind, f'{label:<{LABEL_WIDTH}}')} {message}")

    def _paint(self, kind: str, text: str) -> str:
        return f"\033[{_PAINT[kind]}m{text}\033[0m" if self.colour else text

    def _print(self, text: str) -> None:
        with self._lock:
            print(text, flush=True)


def readable(line: str) -> str:
    """A JSON log line as a person reads it (level, message, the exception's last line); any other
    line (redis-server's, a traceback's) as it is."""
    record = _record(line)
    if record is None:
        return line
    text = f"{record.get('level', '')} {record.get('message', '')}".strip()
    exception = str(record.get("exception") or "").strip()
    return f"{text} ({exception.splitlines()[-1]})" if exception else text


def _record(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
