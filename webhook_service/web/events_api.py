"""`/v1/events`: the caller's tenant's event log (notify/event_log.py), a page at a time or long-polled,
and the same as Server-Sent Events at `/v1/events/stream`.

Waiting holds a web thread: a long-poll (`wait`) up to WAIT_MAX_S, a stream EVENTS_STREAM_S. So, as for
synchronous creates (web/kling_api.py), only EVENTS_WAITING_MAX of them wait at once in a process, and
with SUBMIT_WAITING_MAX fewer than its threads (gunicorn.conf.py checks it): Kling's callbacks and the
health checks always find a thread. A long-poll over the budget is answered at once with what there is
(`waited: false`), and when that is nothing, with `Retry-After` and `retry_after_ms`: it loses nothing,
but a reader that polled again at once would spin, hundreds of requests a second, taking the very
threads the budget keeps free. A stream over the budget is answered at once too, with `retry: 5000` and
its end, which EventSource (and SSE client libraries) take as "reconnect in 5 s, from Last-Event-ID": a
503 would make an EventSource give up for good.

Each wait is an XREAD BLOCK on a connection of the process's own for waits, whose read timeout outlasts
the longest block; the service's other connections give up on a read after 5 s.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import cast

import redis
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState

from webhook_service.notify.event_log import EventLog, parse_task_types, parse_types, tenant_to_read
from webhook_service.services import redis_connection
from webhook_service.web import waiting
from webhook_service.web.auth import current_scope, require_client
from webhook_service.web.context import current_services as services
from webhook_service.web.context import services_of
from webhook_service.web.errors import envelope
from webhook_service.web.params import Query, check_query, query, takes

bp = Blueprint("events", __name__, url_prefix="/v1/events")

LIMIT_MAX = 500
LIMIT_DEFAULT = 100
WAIT_MAX_S = 30
KEEPALIVE_S = 15.0  # a comment on a silent stream: proxies keep it open, and a client gone is noticed
RECONNECT_MS = 1000  # the `retry:` a stream starts with: how soon EventSource reconnects once it ends
BUSY_RETRY_MS = 5000  # when a reader over the budget comes back: a stream's `retry:`, a poll's Retry-After
WAITING_REDIS = "events_waiting_redis"


@bp.record_once
def give_the_process_its_waits(state: BlueprintSetupState) -> None:
    """One budget and one connection pool for waits per app, so per gunicorn worker process."""
    settings = services_of(cast(Flask, state.app)).settings
    waiting.install(cast(Flask, state.app), waiting.EVENTS, settings.events_waiting_max)
    state.app.extensions[WAITING_REDIS] = redis_connection(settings, read_timeout_s=WAIT_MAX_S + 5)


@bp.before_request
def authenticate() -> None:
    require_client(services())


bp.before_request(check_query)


def _waiting_redis() -> redis.Redis:
    connection: redis.Redis = current_app.extensions[WAITING_REDIS]
    return connection


@dataclass(frozen=True)
class _Reading:
    """Whose log (`?tenant=`, an admin's), from which cursor, and which events: `?types=` (event types)
    and `?task_types=` (the types of the tasks they are about)."""

    tenant: str
    after: str
    types: frozenset[str]
    task_types: frozenset[str]


def _reading(asked: Query, after: str | None, after_field: str) -> _Reading:
    """Every problem of the query raised at once (the cursor is checked against the log it is for)."""
    tenant = asked.check(lambda: tenant_to_read(current_scope(), asked.text("tenant")))
    types = asked.check(lambda: parse_types(asked.text("types")))
    task_types = asked.check(lambda: parse_task_types(asked.text("task_types")))
    cursor = None
    if tenant is not None:
        cursor = asked.check(lambda: services().events.cursor(tenant, after, after_field))
    asked.done()
    assert tenant is not None and cursor is not None and types is not None and task_types is not None
    return _Reading(tenant, cursor, types, task_types)


@bp.get("")
@takes("after", "limit", "types", "task_types", "wait", "tenant")
def list_events() -> Response:
    """Oldest first after `?after=`; `?wait=N` waits up to N seconds for the first one when none is there."""
    asked = query()
    limit = asked.integer("limit", 1, LIMIT_MAX, LIMIT_DEFAULT)
    wait_s = asked.integer("wait", 0, WAIT_MAX_S, 0)
    reading = _reading(asked, asked.text("after"), "after")
    log = services().events
    page = log.page(reading.tenant, reading.after, limit, reading.types, reading.task_types)
    waited, retry_after_ms = False, None
    budget = waiting.budget(waiting.EVENTS)
    if wait_s and not page.events and not page.has_more:
        if not budget.acquire(blocking=False):
            retry_after_ms = BUSY_RETRY_MS
        else:
            try:
                deadline = time.monotonic() + wait_s
                pages = log.follow(
                    _waiting_redis(),
                    reading.tenant,
                    page.next_cursor,
                    reading.types,
                    limit=limit,
                    deadline=deadline,
                    tick_s=wait_s,
                    task_types=reading.task_types,
                )
                page, waited = next(pages, page), True
            finally:
                budget.release()
    view = {
        "events": page.events,
        "next_cursor": page.next_cursor,
        "has_more": page.has_more,
        "waited": waited,
        "retry_after_ms": retry_after_ms,
    }
    answer = jsonify(envelope(0, "SUCCEED", view))
    if retry_after_ms is not None:
        answer.headers["Retry-After"] = str(math.ceil(retry_after_ms / 1000))
    return answer


@bp.get("/stream")
@takes("after", "types", "task_types", "tenant")
def stream() -> Response:
    """Server-Sent Events from `Last-Event-ID` (an EventSource's reconnection) or `?after=`, for
    EVENTS_STREAM_S; then the stream ends and the client reconnects where it was."""
    asked = query()
    header = request.headers.get("Last-Event-ID")
    start, field = (header, "Last-Event-ID") if header else (asked.text("after"), "after")
    reading = _reading(asked, start, field)
    budget = waiting.budget(waiting.EVENTS)
    if not budget.acquire(blocking=False):
        busy = ": this process holds as many event streams and long-polls as it may (EVENTS_WAITING_MAX)"
        return _event_stream(f"{busy}\nretry: {BUSY_RETRY_MS}\n\n")
    lifetime_s = services().settings.events_stream_s
    lines = _server_sent(services().events, _waiting_redis(), reading, lifetime_s)
    return _event_stream(_Held(lines, budget.release))


def _event_stream(body: str | _Held) -> Response:
    return Response(
        body,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},  # no proxy may sit on it
    )


def _server_sent(
    log: EventLog, waiting: redis.Redis, reading: _Reading, lifetime_s: float
) -> Generator[str, None, None]:
    """The stream's text: `retry:` first, then each event as `id:` (its cursor), `event:` (its type) and
    `data:` (the same JSON as in `/v1/events`), a comment after each KEEPALIVE_S of silence."""
    yield f"retry: {RECONNECT_MS}\n\n"
    pages = log.follow(
        waiting,
        reading.tenant,
        reading.after,
        reading.types,
        limit=LIMIT_MAX,
        deadline=time.monotonic() + lifetime_s,
        tick_s=min(KEEPALIVE_S, lifetime_s),
        task_types=reading.task_types,
    )
    for page in pages:
        if not page.events:
            yield ": keepalive\n\n"
        for event in page.events:
            data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
            yield f"id: {event['cursor']}\nevent: {event['type']}\ndata: {data}\n\n"


class _Held:
    """A streamed body holding a place in the waiting budget, given back when the server closes it: at
    its end, when the client went away, or when it was never read at all (a generator's own `finally`
    would not run then)."""

    def __init__(self, body: Generator[str, None, None], release: Callable[[], None]) -> None:
        self._body = body
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Iterator[str]:
        return self._body

    def close(self) -> None:
        self._body.close()
        release, self._release = self._release, None
        if release is not None:
            release()
