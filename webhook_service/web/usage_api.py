"""`GET /v1/usage`: which tenant's tasks spent the account's units, per UTC day and model.

A tenant's key sees its own tenant's usage; an admin's sees every tenant's, or one with `?tenant=`
(domain/usage.py counts it).
"""

from __future__ import annotations

from functools import partial

from flask import Blueprint, Response, jsonify

from webhook_service.domain.clock import now_ms
from webhook_service.domain.usage import day_of, parse_day, period, report, tenants_to_show
from webhook_service.web.auth import current_scope, require_client
from webhook_service.web.context import current_services as services
from webhook_service.web.errors import envelope
from webhook_service.web.params import check_query, query, takes

bp = Blueprint("usage", __name__, url_prefix="/v1/usage")


@bp.before_request
def authenticate() -> None:
    require_client(services())


bp.before_request(check_query)


@bp.get("")
@takes("from", "to", "tenant")
def get_usage() -> Response:
    """`?from=YYYY-MM-DD&to=YYYY-MM-DD` (default: the last 30 days, at most 366), `?tenant=` (admin)."""
    svc, asked = services(), query()
    first, last, tenant = asked.text("from"), asked.text("to"), asked.text("tenant")
    days = [
        asked.check(partial(parse_day, name, raw)) for name, raw in (("from", first), ("to", last)) if raw
    ]
    if None not in days:  # each day well written: then whether they make a period
        asked.check(lambda: period(first, last, day_of(now_ms())))
    if tenant:
        asked.check(lambda: tenants_to_show(svc.redis, svc.keys, current_scope(), tenant))
    asked.done()
    found = report(svc.redis, svc.keys, current_scope(), first=first, last=last, tenant=tenant)
    return jsonify(envelope(0, "SUCCEED", found.view()))
