"""The task list: newest first, filtered by status or type or searched by id, a page at a time.

The store indexes tasks by creation time only, so a filter reads the newest tasks in batches and keeps
the matches, never more than SCAN_LIMIT tasks for one page. Pages are addressed by a cursor (how many
of the newest tasks were read before this page), so the next page starts where this one stopped
instead of reading the skipped pages again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from webhook_service.domain.store import TaskStore
from webhook_service.domain.tasks import ArchiveState, Status, Task
from webhook_service.domain.tenants import Scope

PAGE_SIZE = 25
BATCH = 200
SCAN_LIMIT = 5000
PROMPT_CHARS = 90
ARCHIVE_FINAL = (ArchiveState.ARCHIVED, ArchiveState.FAILED)


def in_motion(task: Task) -> bool:
    """Still changing: not final upstream, or succeeded with its archive still to come."""
    if not task.status.terminal:
        return True
    return task.status is Status.SUCCEED and task.archive_state not in ARCHIVE_FINAL


@dataclass(frozen=True)
class Summary:
    """What the list shows of a task's request (which may hold megabytes of Base64: read once)."""

    prompt: str = ""
    mode: str | None = None
    duration: str | None = None


class RequestSummaries:
    """Summaries by external_task_id, kept in this process. A request never changes once recorded, so
    an entry never goes stale; the bound keeps memory flat however many tasks are listed."""

    def __init__(self, store: TaskStore, size: int = 4096) -> None:
        self.store = store
        self.size = size
        self._cache: OrderedDict[str, Summary] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, external_task_id: str) -> Summary:
        with self._lock:
            if (found := self._cache.get(external_task_id)) is not None:
                self._cache.move_to_end(external_task_id)
                return found
        request = self.store.request(external_task_id)
        if request is None:
            return Summary()  # the task is being recorded: not cached, the next look finds it
        summary = Summary(
            prompt=asked_for(request),
            mode=request.get("mode"),
            duration=request.get("duration"),
        )
        with self._lock:
            self._cache[external_task_id] = summary
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return summary


def asked_for(request: dict[str, Any]) -> str:
    """The words of a request, wherever its type keeps them: `prompt`, a unified body's prompt item,
    lip-sync's `input.text`; an effects task's scene, which is all it asks."""
    if isinstance(prompt := request.get("prompt"), str) and prompt:
        return prompt
    contents = request.get("contents")
    for item in contents if isinstance(contents, list) else []:
        if isinstance(item, dict) and item.get("type") == "prompt" and isinstance(item.get("text"), str):
            return str(item["text"])
    wrapped = request.get("input")
    if isinstance(wrapped, dict) and isinstance(wrapped.get("text"), str):
        return str(wrapped["text"])
    scene = request.get("effect_scene")
    return f"effect: {scene}" if isinstance(scene, str) else ""


@dataclass
class Page:
    tasks: list[Task]
    start: int  # how many of the newest tasks come before this page's first candidate
    next_start: int | None  # where the next (older) page starts; None at the end
    scanned_out: bool = False  # stopped at SCAN_LIMIT before the page was full

    @property
    def refreshing(self) -> bool:
        return any(in_motion(task) for task in self.tasks)


def matcher(status: str, query: str, type_name: str = "") -> Callable[[Task], bool] | None:
    """The filter for the list's form; None when nothing is filtered."""
    wanted = {status} if status else set()
    needle = query.strip().lower()
    if not wanted and not needle and not type_name:
        return None

    def keep(task: Task) -> bool:
        if wanted and task.status.value not in wanted:
            return False
        if type_name and task.type != type_name:
            return False
        ids = (task.client_task_id, task.task_id or "", *task.upstream_task_ids)
        return not needle or any(needle in i.lower() for i in ids)

    return keep


def list_page(
    store: TaskStore, scope: Scope, start: int, status: str = "", query: str = "", type_name: str = ""
) -> Page:
    """One page of the tasks `scope` sees, from the `start`-th newest on, keeping only those the filters
    match.

    An exact id (either kind) is found at once, wherever it is; otherwise ids are matched by substring
    among the newest tasks.
    """
    if query.strip() and start == 0 and (exact := store.find(query.strip(), scope)) is not None:
        keep = matcher(status, "", type_name)
        return Page([exact] if keep is None or keep(exact) else [], 0, None)
    keep = matcher(status, query, type_name)
    if keep is None:
        tasks = store.newest(start, PAGE_SIZE + 1, scope)
        more = len(tasks) > PAGE_SIZE
        return Page(tasks[:PAGE_SIZE], start, start + PAGE_SIZE if more else None)
    found: list[Task] = []
    position = start
    while position - start < SCAN_LIMIT:
        batch = store.newest(position, BATCH, scope)
        for offset, task in enumerate(batch):
            if keep(task):
                found.append(task)
                if len(found) == PAGE_SIZE:
                    return Page(found, start, position + offset + 1)
        if len(batch) < BATCH:
            return Page(found, start, None)
        position += BATCH
    return Page(found, start, position, scanned_out=True)
