"""Failed authentications counted per client address, in Redis, so guessing a key takes forever.

Past MAX_FAILURES failures in a window of WINDOW_S seconds, every attempt from that address is refused
with 429 until the window passes, a correct credential too. Letting a correct key through would tell a
guesser which guess was right (a 200 among 429s) and the limit would stop nothing; refusing everything
for a short window costs a legitimate client behind the same address at most a minute, and only when
someone there is failing. Requests that need no credential check (a dashboard session already signed
in, callbacks, health) are never limited, and only failures count, so a busy client never limits itself.

The count lives in Redis so that every web process shares it; each counter expires with its window.
When Redis fails the limiter lets the request through (fails open): a Redis outage must not lock every
client out, and the API then answers 503 for its own reasons anyway.

The address is the WSGI REMOTE_ADDR, which gunicorn takes from the connection: every client behind one
NAT or proxy shares its count. gunicorn's `forwarded_allow_ips` does not change it (it only says whose
scheme headers gunicorn believes); a proxy speaking the PROXY protocol, with gunicorn's
`--proxy-protocol` and `--proxy-allow-from` set to the proxy's address, does (docs/security.md). The
service never reads X-Forwarded-For itself, since any client can send one. IPv6 addresses are counted
by their /64, which one subscriber usually holds whole.
"""

from __future__ import annotations

import ipaddress
import logging
import math

import redis

from webhook_service.keys import Keys

MAX_FAILURES = 20
WINDOW_S = 60

log = logging.getLogger(__name__)

# INCR, and start the window's TTL on the first failure (or on a counter left without one), atomically:
# a counter without a TTL would lock its address out for good.
_COUNT_FAILURE = """
local failures = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return failures
"""


class TooManyFailures(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed authentications; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


def client_key(address: str | None) -> str:
    """The address as counted: IPv4 whole, IPv6 by its /64, anything unparsable as it is."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or "unknown"
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class FailedAuthLimit:
    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self._redis = connection
        self._keys = keys

    def check(self, address: str | None) -> None:
        """Raise TooManyFailures while `address` is over the limit."""
        key = self._keys.auth_failures(client_key(address))
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.pttl(key)
                raw, ttl_ms = pipe.execute()
        except redis.RedisError as error:
            log.warning("failed-auth limit not checked, Redis unavailable (%s)", type(error).__name__)
            return
        if raw is not None and int(raw) >= MAX_FAILURES:
            raise TooManyFailures(max(1, math.ceil(int(ttl_ms) / 1000)) if ttl_ms > 0 else WINDOW_S)

    def record_failure(self, address: str | None) -> None:
        key = self._keys.auth_failures(client_key(address))
        try:
            self._redis.eval(_COUNT_FAILURE, 1, key, WINDOW_S)
        except redis.RedisError as error:
            log.warning("failed authentication not counted, Redis unavailable (%s)", type(error).__name__)
