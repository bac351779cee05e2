"""`/v1/callback-secret`: the secret the caller's tenant checks its callback_url deliveries with.

Each tenant's is its own (notify/callback_signing.py), so a tenant may read it whenever it likes: it
tells nothing of another tenant's, nor of NOTIFY_WEBHOOK_SECRET, unless the caller is the `default`
tenant, whose callback deliveries that secret signs.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from webhook_service.notify.callback_signing import callback_secret
from webhook_service.web.auth import current_scope, require_client
from webhook_service.web.context import current_services as services
from webhook_service.web.errors import CODE_NOT_FOUND, ApiError, envelope

bp = Blueprint("callback_secret", __name__, url_prefix="/v1/callback-secret")


@bp.before_request
def authenticate() -> None:
    require_client(services())


@bp.get("")
def get_callback_secret() -> Response:
    tenant = current_scope().tenant
    secret = callback_secret(services().settings.notify_webhook_secret, tenant)
    if not secret:
        raise ApiError(
            404,
            CODE_NOT_FOUND,
            "no callback signing secret: NOTIFY_WEBHOOK_SECRET is not set, so callback_url deliveries "
            "are sent unsigned",
        )
    return jsonify(envelope(0, "SUCCEED", {"tenant": tenant, "secret": secret}))
