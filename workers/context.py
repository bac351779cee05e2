"""What a job needs, built once per work horse process from the same settings as the web app.

RQ forks a work horse per job; objects holding sockets (the Redis pool, the Kling client) are built
lazily in the process that uses them, never inherited across the fork.
"""

from __future__ import annotations

import os

from webhook_service.config import Settings
from webhook_service.lifecycle import Services

_services: Services | None = None
_pid: int | None = None


def services() -> Services:
    global _services, _pid
    if _services is None or _pid != os.getpid():
        _services = Services.build(Settings.from_env())
        _pid = os.getpid()
    return _services
