"""A reader over the process's waiting budget (EVENTS_WAITING_MAX) is told when to come back, and the
long-poll loop docs/notifications.md gives pipelines does come back then, rather than polling again at
once: with one stream open, that loop made over a thousand requests in three seconds."""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from kling_simulator import SimulatorServer
from tests.conftest import Service
from tests.support import wait_for
from tests.test_events_stream import LONG_POLL_S, SILENT, create, logged, read, waiting_in_redis
from tests.test_tenants import KEY_A, TENANTS

DOCS = Path(__file__).resolve().parent.parent / "docs" / "notifications.md"


class Paused(Exception):
    """Ends the documented loop at its first pause, which is what the test looks at."""


class RecordedSleep:
    """Stands in for the `time` module the documented loop sleeps with: records the pause, then ends it."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        raise Paused


class CountedHttpx:
    """httpx for the documented loop, its requests counted: a loop that never pauses is stopped at its
    third request rather than spinning on."""

    def __init__(self) -> None:
        self.requests = 0
        self.Client = functools.partial(httpx.Client, event_hooks={"request": [self._count]})

    def _count(self, request: httpx.Request) -> None:
        self.requests += 1
        if self.requests > 2:
            raise Paused


def documented_long_poll_loop() -> str:
    """The Python long-poll loop of docs/notifications.md, as a reader would copy it."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    (loop,) = [block for block in blocks if "def events(" in block]
    return loop


def test_the_documented_loop_waits_as_told_when_the_budget_is_taken(
    services_with: Callable[..., Service], simulator: SimulatorServer
) -> None:
    service = services_with(**TENANTS)
    create(service, simulator, "crane-1", SILENT, key=KEY_A, tenant="team-a")
    (submitted,) = logged(service, 1, key=KEY_A)
    namespace: dict[str, Any] = {}
    exec(documented_long_poll_loop(), namespace)  # the docs' own code, run as written
    clock, http = RecordedSleep(), CountedHttpx()
    namespace.update(time=clock, httpx=http)
    with ThreadPoolExecutor(max_workers=1) as pool:
        holder = pool.submit(
            read, service, KEY_A, timeout=LONG_POLL_S + 10, after=submitted["cursor"], wait=LONG_POLL_S
        )
        wait_for(lambda: waiting_in_redis(service), what="a long-poll to take the budget")
        events = namespace["events"](service.url, KEY_A, submitted["cursor"])
        with contextlib.suppress(Paused):
            next(events)
        assert http.requests == 1 and clock.asked == [5.0]  # as retry_after_ms says, not at once
        create(service, simulator, "crane-2", SILENT, key=KEY_A, tenant="team-a")  # ends the held long-poll
        assert holder.result(timeout=LONG_POLL_S)["waited"]
