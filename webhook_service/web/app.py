"""The web app's factory: the drop-in Kling API, the service's own API, the dashboard, the docs.

`create_app()` builds the `Services` from the settings (the workers build theirs from the same
settings) and hands them to the app; blueprints are imported here, inside the factory, so importing
the domain never loads the web.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis
from flask import Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from webhook_service.config import Settings
from webhook_service.domain.body_limits import V1_CREATE, BodyLimit
from webhook_service.domain.task_types import TASK_TYPES
from webhook_service.integrations import logs
from webhook_service.services import Services


def create_app(test_config: Mapping[str, str] | None = None) -> Flask:
    """Build the app from the environment, or from `test_config` alone (variable name -> value)."""
    from webhook_service.cli import register_cli
    from webhook_service.web import (
        callback_secret_api,
        callbacks,
        dashboard,
        deliveries_api,
        endpoints_api,
        events_api,
        health,
        kling_api,
        metrics,
        openapi,
        tasks_api,
        unified_api,
        usage_api,
    )
    from webhook_service.web.context import install
    from webhook_service.web.errors import (
        CODE_BAD_REQUEST,
        ApiError,
        error_response,
        register_error_handlers,
        request_id,
        storage_unavailable,
    )

    settings = Settings.from_env(test_config) if test_config is not None else Settings.from_env()
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=V1_CREATE.max_bytes,  # a create route's own: own_body_limit()
        SECRET_KEY=settings.secret_key,
        SECRET_KEY_FALLBACKS=list(settings.secret_key_fallbacks),
    )
    services = Services.build(settings)
    install(app, services)

    register_error_handlers(app)
    logs.add_secrets(logs.secret_values(settings))

    @app.before_request
    def start_log_context() -> None:
        """Every request's lines carry its request id, and nothing of the previous request's."""
        logs.reset(request_id=request_id())

    @app.before_request
    def limit_the_body() -> None:
        """Before anything reads the body: a unified create's frames make its bound larger (or smaller)."""
        request.max_content_length = (own_body_limit() or V1_CREATE).max_bytes

    @app.teardown_request
    def end_log_context(_error: BaseException | None) -> None:
        logs.reset()

    @app.errorhandler(redis.RedisError)
    def redis_failed(error: redis.RedisError) -> tuple[Response, int]:
        return error_response(storage_unavailable(error))

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_error: RequestEntityTooLarge) -> tuple[Response, int]:
        return error_response(ApiError(413, CODE_BAD_REQUEST, too_large_message()))

    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(tasks_api.bp)
    app.register_blueprint(deliveries_api.bp)
    app.register_blueprint(endpoints_api.bp)
    app.register_blueprint(callback_secret_api.bp)
    app.register_blueprint(events_api.bp)
    app.register_blueprint(usage_api.bp)
    register_cli(app)
    app.register_blueprint(kling_api.bp)
    app.register_blueprint(kling_api.bp, url_prefix="/kling", name="kling_api_gateway")
    app.register_blueprint(unified_api.bp)
    app.register_blueprint(unified_api.bp, url_prefix="/kling", name="unified_api_gateway")
    dashboard.init_app(app)
    # Kling's callbacks are served in front of Flask: see web/callbacks.py for why.
    app.wsgi_app = callbacks.CallbackEndpoint(services, app.wsgi_app)  # type: ignore[method-assign]

    return app


def own_body_limit() -> BodyLimit | None:
    """The bound of the request's create route, its task type's; None on a route without a create body,
    whose bound is the /v1 creates' (domain/body_limits.py)."""
    kind = TASK_TYPES.get((request.view_args or {}).get("type_name", ""))
    return kind.body_limit if kind is not None else None


def too_large_message() -> str:
    """Which limit, whose, why, and how large the body said it was (nothing when sent chunked)."""
    own = own_body_limit()
    limit = own or V1_CREATE
    size = f" ({request.content_length:,} bytes)" if request.content_length is not None else ""
    route = f"{request.method} {request.path}"
    shared = "" if own else ", as every route without a create body of its own"
    return (
        f"the request body{size} is over the limit of {route}, {limit.max_bytes:,} bytes "
        f"({limit.max_bytes / 1024**2:.1f} MiB){shared}: {limit.reason}"
    )
