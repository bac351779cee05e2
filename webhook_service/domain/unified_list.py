"""Kling's unified list, `POST /tasks`: the caller's tasks created in a time window, newest first, a page
at a time by cursor, filtered by status and product type (docs/kling-endpoints.md, "The unified API").

Kling's body: `start_time` and `end_time` (Unix ms, as strings; the last 30 days by default, the start
before the end), `cursor` (the previous page's `next_cursor`; with one, the times are the first page's),
`limit` (1 to 500, 100 by default), `filters` (`[{key: status | product_type, values: [...]}]`, statuses
submitted, processing, succeeded, failed, product types video, image, try_on). Kling's cursor is opaque;
ours carries the window and how many tasks came before, so pages do not shift when tasks are created
meanwhile (they are newer than the window's end). A task still queued here has no Kling status: a
status filter leaves it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, Strict, StringConstraints

from webhook_service.domain.body_rules import BodyRules, validate_body
from webhook_service.domain.clock import now_ms
from webhook_service.domain.field_types import between, documented, enum, shape
from webhook_service.domain.problems import FieldProblem, RequestInvalid
from webhook_service.domain.store import TaskStore
from webhook_service.domain.task_lists import newest_matching
from webhook_service.domain.task_types import Pack, task_type
from webhook_service.domain.tasks import Task
from webhook_service.domain.tenants import Scope
from webhook_service.domain.unified import status_of

WINDOW_MS = 30 * 24 * 3600 * 1000
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
STATUSES = ("submitted", "processing", "succeeded", "failed")
PRODUCT_TYPES = {"video": Pack.VIDEO, "image": Pack.IMAGE, "try_on": Pack.TRYON}

Millis = Annotated[str, StringConstraints(strict=True, pattern=r"^[0-9]{1,15}$")]
Filter = shape("filters", {"key": enum("status", "product_type"), "values": list[str]})
RULES = BodyRules(
    field_types={
        "start_time": Millis,
        "end_time": Millis,
        "cursor": Annotated[str, Strict(), documented(description="the previous page's next_cursor")],
        "limit": Annotated[int, Strict(), between(1, MAX_LIMIT), documented(minimum=1, maximum=MAX_LIMIT)],
        "filters": Annotated[list[Filter], Strict(), Field(max_length=2)],  # type: ignore[valid-type]
    },
    required=(),
    default_model="",
    description="Kling's unified task list: a time window (ms, as strings), a cursor, a limit, filters.",
)


@dataclass(frozen=True)
class Page:
    tasks: list[Task]
    next_cursor: str
    has_more: bool


def _filter_problems(filters: list[dict[str, Any]]) -> list[FieldProblem]:
    problems, keys = [], set()
    for n, item in enumerate(filters):
        allowed = STATUSES if item["key"] == "status" else tuple(PRODUCT_TYPES)
        if item["key"] in keys:
            problems.append(FieldProblem(f"filters[{n}].key", "duplicate", "is given twice"))
        keys.add(item["key"])
        for m, value in enumerate(item["values"]):
            if value not in allowed:
                message = f"must be one of: {', '.join(allowed)}"
                problems.append(FieldProblem(f"filters[{n}].values[{m}]", "enum", message))
    return problems


def _window(body: dict[str, Any]) -> tuple[int, int, int, list[FieldProblem]]:
    """(start, end, offset) from the cursor when there is one, else from the times."""
    if body.get("cursor"):
        parts = body["cursor"].split(".")
        if len(parts) == 3 and all(part.isdigit() for part in parts):
            return int(parts[0]), int(parts[1]), int(parts[2]), []
        return 0, 0, 0, [FieldProblem("cursor", "format", "is not a next_cursor this service gave")]
    end = int(body.get("end_time") or now_ms())
    start = int(body["start_time"]) if body.get("start_time") else end - WINDOW_MS
    if start >= end:
        return 0, 0, 0, [FieldProblem("start_time", "range", "must be before end_time")]
    return start, end, 0, []


def list_page(store: TaskStore, scope: Scope, body: object) -> Page:
    """The page the body asks for of `scope`'s tasks, or RequestInvalid listing every problem."""
    problems: list[FieldProblem] = []
    try:
        body = validate_body(RULES, body)
    except RequestInvalid as invalid:
        problems = list(invalid.problems)
    clean = body if isinstance(body, dict) and not problems else {}
    filters = {item["key"]: set(item["values"]) for item in clean.get("filters", [])}
    problems += _filter_problems(clean.get("filters", []))
    start, end, offset, window_problems = _window(clean)
    if problems or window_problems:
        raise RequestInvalid(problems + window_problems)
    packs = {PRODUCT_TYPES[value] for value in filters.get("product_type", PRODUCT_TYPES)}

    def keep(task: Task) -> bool:
        return (
            start <= task.created_at < end
            and status_of(task) in filters.get("status", {status_of(task)})
            and task_type(task.type).pack in packs
        )

    limit = clean.get("limit", DEFAULT_LIMIT)
    found = newest_matching(store, scope, keep, offset=offset, limit=limit + 1)
    has_more = len(found) > limit
    return Page(found[:limit], f"{start}.{end}.{offset + limit}" if has_more else "", has_more)
