"""The web app's factory: the drop-in Kling API, the service's own API, the dashboard, the docs.

`create_app()` builds the `Services` from the settings (the workers build theirs from the same
settings) and hands them to the app; blueprints are imported here, inside the factory, so importing
the domain never loads the web.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import redis
from flask import Flask, Response
from werkzeug.exceptions import RequestEntityTooLarge

from webhook_service.config import Settings
from webhook_service.domain.validation import MAX_IMAGE_BYTES
from webhook_service.integrations import logs
from webhook_service.services import Services

# The largest create body Kling's rules allow, and so the most any request may send. An image is at
# most 10 MB (MAX_IMAGE_BYTES = 10,485,760 bytes, as validation counts them), which is
# 4 * ceil(10,485,760 / 3) = 13,981,016 characters of Base64. Beside `image`, a request may use one of
# three groups: image_tail (1 more image), camera_control (none) or the motion brush, static_mask with
# up to 6 dynamic_masks[].mask (7 more). So 8 images (multi-image to image takes 6 at most: four
# subjects, a scene, a style): 111,848,128 characters. Everything else fits in
# 1 MiB: two prompts of 2,500 characters at most 12 bytes each as JSON escapes (60,000 bytes), 6 x 77
# trajectory points, ids, URLs and whitespace. In all 112,896,704 bytes (107.7 MiB).
MAX_IMAGES_PER_REQUEST = 1 + 1 + 6  # image, static_mask, six dynamic_masks
BASE64_IMAGE_CHARS = 4 * math.ceil(MAX_IMAGE_BYTES / 3)
MAX_REQUEST_BYTES = MAX_IMAGES_PER_REQUEST * BASE64_IMAGE_CHARS + 1024 * 1024


def create_app(test_config: Mapping[str, str] | None = None) -> Flask:
    """Build the app from the environment, or from `test_config` alone (variable name -> value)."""
    from webhook_service.cli import register_cli
    from webhook_service.web import (
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
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
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

    @app.teardown_request
    def end_log_context(_error: BaseException | None) -> None:
        logs.reset()

    @app.errorhandler(redis.RedisError)
    def redis_failed(error: redis.RedisError) -> tuple[Response, int]:
        return error_response(storage_unavailable(error))

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_error: RequestEntityTooLarge) -> tuple[Response, int]:
        message = (
            f"the request body is over the limit of {MAX_REQUEST_BYTES:,} bytes "
            f"({MAX_REQUEST_BYTES / 1024**2:.1f} MiB): the most Kling's rules allow, "
            f"{MAX_IMAGES_PER_REQUEST} images of 10 MB in Base64 and 1 MiB for the other fields"
        )
        return error_response(ApiError(413, CODE_BAD_REQUEST, message))

    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(tasks_api.bp)
    app.register_blueprint(deliveries_api.bp)
    app.register_blueprint(endpoints_api.bp)
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
