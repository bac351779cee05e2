"""Kling webhook service: a drop-in front for Kling's image-to-video API.

`create_app()` builds the web app; the workers build the same `Services` from the same settings.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import redis
from flask import Flask, Response

from webhook_service import (
    api,
    callbacks,
    dashboard,
    deliveries_api,
    health,
    logs,
    metrics,
    openapi,
    task_views,
)
from webhook_service.cli import register_cli
from webhook_service.config import Settings
from webhook_service.errors import CODE_UNAVAILABLE, ApiError, error_response, register_error_handlers
from webhook_service.lifecycle import Services

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024 * 1024  # two 10 MB images in Base64, masks and room to spare


def create_app(test_config: Mapping[str, str] | None = None) -> Flask:
    """Build the app from the environment, or from `test_config` alone (variable name -> value)."""
    settings = Settings.from_env(test_config) if test_config is not None else Settings.from_env()
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES, SECRET_KEY=settings.secret_key)
    app.extensions["webhook_service"] = Services.build(settings)

    register_error_handlers(app)
    logs.init_app(app)

    @app.errorhandler(redis.RedisError)
    def storage_unavailable(error: redis.RedisError) -> tuple[Response, int]:
        log.error("Redis unavailable: %s", type(error).__name__)
        return error_response(ApiError(503, CODE_UNAVAILABLE, "storage is unavailable, try again shortly"))

    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(callbacks.bp)
    app.register_blueprint(task_views.bp)
    app.register_blueprint(deliveries_api.bp)
    deliveries_api.register_cli(app)
    register_cli(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(api.bp, url_prefix="/kling", name="kling_api_gateway")
    dashboard.init_app(app)

    if not settings.client_auth_enabled:
        log.warning(
            "!!! The API is OPEN: no SERVICE_API_KEYS or SERVICE_ACCESS_KEY/SERVICE_SECRET_KEY are set, "
            "so anyone who can reach this service can submit tasks. Set one before exposing it. !!!"
        )
    return app
