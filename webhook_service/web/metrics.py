"""`GET /metrics`: the Prometheus scrape (what is counted is integrations/metrics.py's, the gauges
domain/gauges.py's)."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST

from webhook_service.domain.gauges import exposition
from webhook_service.web.auth import require_client
from webhook_service.web.context import current_services

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """Behind the client credentials unless METRICS_PUBLIC=true: queue sizes and failure rates are
    business information, and a scraper can send a bearer token as easily as a client does. A tenant's
    key sees only the series labelled with its own tenant (the others, and the gauges, add up every
    tenant's work); an admin's key, an open API's caller and a METRICS_PUBLIC scrape, everything."""
    services = current_services()
    tenant = None
    if not services.settings.metrics_public:
        scope = require_client(services)
        tenant = None if scope.admin else scope.tenant
    body = exposition(services.redis, services.keys, tenant)
    return Response(body, content_type=CONTENT_TYPE_LATEST)
