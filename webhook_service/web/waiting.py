"""How many requests of one web process may wait at once, each holding a thread meanwhile: two budgets.

- SUBMITS (SUBMIT_WAITING_MAX): requests that wait on Kling. A synchronous create waits for a slot (up
  to SUBMIT_WAIT_S) and for Kling's answer (up to KLING_TIMEOUT_S); identify-face waits for Kling's
  answer, which is all it is. Beyond the budget nothing waits: a create is queued (202), an
  identify-face answered 429, to be tried again in a second.
- EVENTS (EVENTS_WAITING_MAX): event long-polls and streams (web/events_api.py), answered at once beyond
  it with what there is.

Enough waiting requests would hold every thread, and Kling's callbacks and the health checks would wait
behind them: so each budget is a non-blocking semaphore per process, and gunicorn.conf.py checks that
the two leave a thread free.
"""

from __future__ import annotations

import threading

from flask import Flask, current_app

SUBMITS = "submit_waiting_budget"
EVENTS = "events_waiting_budget"


def install(app: Flask, name: str, size: int) -> None:
    """One per app, so one per gunicorn worker process: each builds its own app."""
    app.extensions[name] = threading.BoundedSemaphore(size)


def budget(name: str) -> threading.BoundedSemaphore:
    """The current app's budget `name`: `acquire(blocking=False)` for a place, `release()` to give it back."""
    held: threading.BoundedSemaphore = current_app.extensions[name]
    return held
