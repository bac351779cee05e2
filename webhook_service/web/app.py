"""The web app's factory: the drop-in Kling API, the service's own API, the dashboard, the docs.

`create_app()` builds the `Services` from the settings (the workers build theirs from the same
settings) and hands them to the app; blueprints are imported here, inside the factory, so importing
the domain never loads the web.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis
from flask import Flask, Response

from webhook_service.config import Settings
from webhook_service.integrations import logs
from webhook_service.services import Services

MAX_REQUEST_BYTES = 64 * 1024 * 1024  # two 10 MB images in Base64, masks and room to spare


def create_app(test_config: Mapping[str, str] | None = None) -> Flask:
    """Build the app from the environment, or from `test_config` alone (variable name -> value)."""
    from webhook_service.cli import register_cli
    from webhook_service.web import (
        callbacks,
        dashboard,
        deliveries_api,
        health,
        kling_api,
        metrics,
        openapi,
        tasks_api,
    )
    from webhook_service.web.context import install
    from webhook_service.web.errors import (
        error_response,
        register_error_handlers,
        request_id,
        storage_unavailable,
    )

    settings = Settings.from_env(test_config) if test_config is not None else Settings.from_env()
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES, SECRET_KEY=settings.secret_key)
    services = Services.build(settings)
    install(app, services)

    register_error_handlers(app)
    logs.add_secrets(logs.secret_values(settings))

    @app.before_request
    def start_log_context() -> None:
        """Every request's lines carry its request id, and nothing of the previous request's."""
        logs.reset(request_id=request_id())

    @app.teardown_request
    def end_log_context(_error: BaseException | None) -> None:
        logs.reset()

    @app.errorhandler(redis.RedisError)
    def redis_failed(error: redis.RedisError) -> tuple[Response, int]:
        return error_response(storage_unavailable(error))

    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(tasks_api.bp)
    app.register_blueprint(deliveries_api.bp)
    register_cli(app)
    app.register_blueprint(kling_api.bp)
    app.register_blueprint(kling_api.bp, url_prefix="/kling", name="kling_api_gateway")
    dashboard.init_app(app)
    # Kling's callbacks are served in front of Flask: see web/callbacks.py for why.
    app.wsgi_app = callbacks.CallbackEndpoint(services, app.wsgi_app)  # type: ignore[method-assign]

    return app
