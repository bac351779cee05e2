"""Sending queued tasks upstream, from a worker, when a slot frees or a pause ends."""

from __future__ import annotations

from webhook_service.submission import dispatch
from workers.context import services


def dispatch_job() -> int:
    return dispatch(services())
