"""A test event ("Send test event": `POST /v1/endpoints/<id>/test` and the dashboard's button), sent while
the caller waits, so bounded twice over.

It runs in a web thread, not a worker, and skips the endpoint's delivery lock (a test must go at once,
even while a delivery is retried): at a receiver that hangs, each click would hold a web thread for
NOTIFY_TIMEOUT_S, and a few would hold them all, Kling's callbacks waiting behind. So a test waits at
most PING_TIMEOUT_MAX_S (less when NOTIFY_TIMEOUT_S is), and only one per endpoint is in flight at once:
another is refused (PingInFlight) rather than queued. The lock has a TTL of the longest a test takes, so
a process killed mid-test holds it no longer.
"""

from __future__ import annotations

import math
import secrets

from webhook_service.integrations.redis_locks import release_if_held
from webhook_service.notify.endpoints import Endpoint
from webhook_service.notify.send import ping
from webhook_service.notify.sinks import Attempt
from webhook_service.services import Services

PING_TIMEOUT_MAX_S = 10.0
LOCK_MARGIN_S = 5.0  # beyond the test's timeout: its bookkeeping


class PingInFlight(Exception):
    """A test event is already being sent to this endpoint."""

    def __init__(self, endpoint_id: str, timeout_s: float) -> None:
        super().__init__(
            f"a test event to endpoint {endpoint_id} is already in flight (it takes at most "
            f"{timeout_s:g} s): wait for its answer, then send another"
        )


def ping_timeout_s(svc: Services) -> float:
    return min(svc.settings.notify_timeout_s, PING_TIMEOUT_MAX_S)


def send_test_event(svc: Services, endpoint: Endpoint) -> Attempt:
    """A signed `ping` to the endpoint now, within ping_timeout_s; PingInFlight when one already is."""
    timeout_s = ping_timeout_s(svc)
    lock, token = svc.keys.endpoint_testing(endpoint.id), secrets.token_hex(16)
    if not svc.redis.set(lock, token, nx=True, px=math.ceil((timeout_s + LOCK_MARGIN_S) * 1000)):
        raise PingInFlight(endpoint.id, timeout_s)
    try:
        return ping(svc, endpoint, timeout_s)
    finally:
        release_if_held(svc.redis, lock, token)
