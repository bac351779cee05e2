"""How many requests of one web process may wait on Kling at once: SUBMIT_WAITING_MAX.

A synchronous create waits for a slot (up to SUBMIT_WAIT_S) and for Kling's answer (up to
KLING_TIMEOUT_S); identify-face waits for Kling's answer, which is all it is. Each holds a thread of
the process meanwhile, and enough of them would hold every thread: Kling's callbacks and the health
checks would wait behind them. So they share one non-blocking budget per process (gunicorn.conf.py
checks it leaves a thread free); a request beyond it does not wait (a create is queued, answered 202;
an identify-face is answered 429, to be tried again in a second).
"""

from __future__ import annotations

import threading

from flask import Flask, current_app

_EXTENSION = "submit_waiting_budget"


def install(app: Flask, size: int) -> None:
    """One per app, so one per gunicorn worker process: each builds its own app."""
    app.extensions[_EXTENSION] = threading.BoundedSemaphore(size)


def budget() -> threading.BoundedSemaphore:
    """The current app's budget: `acquire(blocking=False)` for a place, `release()` to give it back."""
    held: threading.BoundedSemaphore = current_app.extensions[_EXTENSION]
    return held
