"""A read that times out through Sentinel drops its connection: the next command must get its own reply.

Found across hosts (tests/cluster/): a web host cut off from Redis for 10 s answered 500 for the rest of
the run, its pooled connections reading the replies of the commands before theirs."""

from __future__ import annotations

import pytest
import redis

from tests import test_sentinel
from tests.support import SentinelGroup
from webhook_service.config import Settings
from webhook_service.services import redis_connection

pytestmark = pytest.mark.timeout(60)
group = test_sentinel.group  # a primary, its replica and three sentinels of the test's own


def test_a_timed_out_read_leaves_no_reply_behind_for_the_next_command(group: SentinelGroup) -> None:
    settings = Settings.from_env({"SECRET_KEY": "sentinel-reads-secret-0123456789", **group.env})
    connection = redis_connection(settings, read_timeout_s=0.3)
    connection.set("probe", "its own value")
    with pytest.raises(redis.TimeoutError):
        connection.blpop(["nothing-there"], timeout=0.5)  # Redis answers (nil) after the read gave up
    # Kept, the connection would answer this GET with the BLPOP's late nil (or time out waiting for it).
    assert connection.get("probe") == b"its own value"
    assert connection.ping() is True
