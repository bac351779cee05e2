"""Pages of tasks that match a condition (a type, a status), newest first, read from the scope's
index of all its tasks.

Kling lists each task type at its own path, so the drop-in list of a type shows that type's tasks
only. The service keeps one index per tenant, not one per tenant and type: a page is read by walking
the tenant's index newest first and keeping the matches, which costs the tasks of other types newer
than the page's last match, read in chunks. While nearly all of a tenant's tasks are of one type that
is a page's worth; a per-type index would make it exact at the price of one more sorted set per
tenant and type to write, back-fill and trim at retention.
"""

from __future__ import annotations

from collections.abc import Callable

from webhook_service.domain.store import TaskStore
from webhook_service.domain.tasks import Task
from webhook_service.domain.tenants import Scope

CHUNK_MIN = 100


def newest_matching(
    store: TaskStore,
    scope: Scope,
    keep: Callable[[Task], bool],
    *,
    offset: int,
    limit: int,
    scan_max: int | None = None,
) -> list[Task]:
    """The matches from the `offset`-th to the `offset + limit`-th, newest first; with `scan_max`, only
    among the scope's newest `scan_max` tasks (a bound on the cost when matches may be rare)."""
    chunk = max(limit, CHUNK_MIN)
    found: list[Task] = []
    read = 0
    while scan_max is None or read < scan_max:
        page = store.newest(read, chunk, scope)
        read += chunk
        found += [task for task in page if keep(task)]
        if len(found) >= offset + limit or len(page) < chunk:
            break
    return found[offset : offset + limit]
