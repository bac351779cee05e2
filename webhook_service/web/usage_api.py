"""`GET /v1/usage`: which tenant's tasks spent the account's units, per UTC day and model.

A tenant's key sees its own tenant's usage; an admin's sees every tenant's, or one with `?tenant=`
(domain/usage.py counts it).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from webhook_service.domain.usage import BadUsageQuery, report
from webhook_service.web.auth import current_scope, require_client
from webhook_service.web.context import current_services as services
from webhook_service.web.errors import envelope
from webhook_service.web.params import bad

bp = Blueprint("usage", __name__, url_prefix="/v1/usage")


@bp.before_request
def authenticate() -> None:
    require_client(services())


@bp.get("")
def get_usage() -> Response:
    """`?from=YYYY-MM-DD&to=YYYY-MM-DD` (default: the last 30 days, at most 366), `?tenant=` (admin)."""
    svc = services()
    try:
        found = report(
            svc.redis,
            svc.keys,
            current_scope(),
            first=request.args.get("from"),
            last=request.args.get("to"),
            tenant=request.args.get("tenant"),
        )
    except BadUsageQuery as error:
        raise bad(error.field, str(error)) from None
    return jsonify(envelope(0, "SUCCEED", found.view()))
