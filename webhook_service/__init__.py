"""Kling webhook service: a drop-in front for Kling's image-to-video API.

`create_app()` builds the web app; the workers build the same `Services` from the same settings.
"""

from __future__ import annotations

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
from webhook_service.errors import error_response, register_error_handlers, storage_unavailable
from webhook_service.lifecycle import Services

MAX_REQUEST_BYTES = 64 * 1024 * 1024  # two 10 MB images in Base64, masks and room to spare


def create_app(test_config: Mapping[str, str] | None = None) -> Flask:
    """Build the app from the environment, or from `test_config` alone (variable name -> value)."""
    settings = Settings.from_env(test_config) if test_config is not None else Settings.from_env()
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES, SECRET_KEY=settings.secret_key)
    services = app.extensions["webhook_service"] = Services.build(settings)

    register_error_handlers(app)
    logs.init_app(app)

    @app.errorhandler(redis.RedisError)
    def redis_failed(error: redis.RedisError) -> tuple[Response, int]:
        return error_response(storage_unavailable(error))

    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(task_views.bp)
    app.register_blueprint(deliveries_api.bp)
    deliveries_api.register_cli(app)
    register_cli(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(api.bp, url_prefix="/kling", name="kling_api_gateway")
    dashboard.init_app(app)
    # Kling's callbacks are served in front of Flask: see webhook_service/callbacks.py for why.
    app.wsgi_app = callbacks.CallbackEndpoint(services, app.wsgi_app)  # type: ignore[method-assign]

    return app
