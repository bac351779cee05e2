"""Timed callback delivery: a small pool of daemon workers sharing one deadline heap.

Several workers so one slow receiver does not hold up every other task's callbacks; one heap so
shutdown and reset can drop everything still pending at once.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

log = logging.getLogger(__name__)

CALLBACK_TIMEOUT = 5.0


class Scheduler:
    """Runs callables at `time.monotonic()` deadlines; jobs due at the same moment run in submission order."""

    def __init__(self, workers: int = 4) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"kling-sim-callbacks-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def call_at(self, when: float, job: Callable[[], None]) -> None:
        with self._cond:
            if self._closed:
                return
            heapq.heappush(self._heap, (when, next(self._seq), job))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def clear(self) -> None:
        """Drop every job not yet started."""
        with self._cond:
            self._heap.clear()

    def close(self, timeout: float = 1.0) -> None:
        """Drop pending jobs and stop; a delivery in flight gets `timeout` seconds before being abandoned."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _next_job(self) -> Callable[[], None] | None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                if self._heap and self._heap[0][0] <= now:
                    return heapq.heappop(self._heap)[2]
                self._cond.wait(self._heap[0][0] - now if self._heap else None)
            return None

    def _work(self) -> None:
        while (job := self._next_job()) is not None:
            try:
                job()
            except Exception:
                log.exception("simulated callback job failed")


def callback_headers(secret: str | None, msg_id: str, body: str) -> dict[str, str]:
    """JSON content type, plus Standard Webhooks signature headers when the scenario has a secret."""
    headers = {"Content-Type": "application/json"}
    if secret:
        now = datetime.now(UTC)
        headers.update(
            {
                "webhook-id": msg_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": Webhook(secret).sign(msg_id, now, body),
            }
        )
    return headers


def post(
    client: httpx.Client, url: str, body: bytes, headers: dict[str, str]
) -> tuple[int | None, str | None]:
    """One delivery attempt (Kling does not retry): the answered status code, or the error text."""
    try:
        response = client.post(url, content=body, headers=headers, timeout=CALLBACK_TIMEOUT)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return response.status_code, None
