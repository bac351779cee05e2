"""Liveness and readiness, for load balancers and process supervisors."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify

from webhook_service.web.context import current_services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    try:
        current_services().redis.ping()
    except redis.RedisError as error:
        return jsonify(status="unavailable", redis=type(error).__name__), 503
    return jsonify(status="ok", redis="ok"), 200
