"""Giving back a lock held in Redis as a key with a TTL whose value is its holder's token: the key is
deleted only if it still holds the caller's token. A holder that outlived the TTL (a long attempt, a
pause) would otherwise delete the lock another has taken since. One script, atomic in Redis, for every
such lock of the service: the reconciliation pass's, a sink's turn, an endpoint's test event.
"""

from __future__ import annotations

import redis

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def release_if_held(connection: redis.Redis, key: str, token: str) -> bool:
    """Delete `key` if it still holds `token`; whether it did."""
    return bool(connection.register_script(_RELEASE)(keys=[key], args=[token]))
