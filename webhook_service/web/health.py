"""Liveness and readiness, for load balancers and process supervisors.

/readyz also says what Redis promises to keep (`durable`: true, false, or null when Redis will not
say), from a reading at most half a minute old (integrations/redis_config.py): a probe costs one
round trip, the ping, nearly every time. A Redis the service would refuse at start (an evicting
policy; one that keeps nothing, with REQUIRE_DURABLE_REDIS) makes it not ready (503, `unfit`): the
start-up check is skipped when Redis does not answer yet, and a policy can change under a running
service (CONFIG SET, a failover to a replica configured otherwise).
"""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify

from webhook_service.integrations.redis_config import unfit_reason
from webhook_service.web.context import current_services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    services = current_services()
    try:
        services.redis.ping()
        durability = services.durability.current()
    except redis.RedisError as error:
        return jsonify(status="unavailable", redis=type(error).__name__), 503
    unfit = unfit_reason(durability, require_durable=services.settings.require_durable_redis)
    if unfit:
        return jsonify(status="unfit", redis="ok", reason=unfit, **durability.as_dict()), 503
    return jsonify(status="ok", redis="ok", **durability.as_dict()), 200
