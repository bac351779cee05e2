"""The dashboard's Endpoints page: the scope's webhook endpoints (notify/endpoints.py), each with its
attempts over the last 24 hours as a small chart and its success rate, its last attempts, and forms to
enable or disable it, rotate its secret and send a test event.

A rotated secret is shown once, in the page that answers the form: never in a flashed message, which
would carry it in the session cookie. The forms carry the CSRF token like every dashboard form
(web/dashboard/__init__.py checks it), and act through the same scoped store as the API: another
tenant's endpoint is not found.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from webhook_service.domain.clock import now_ms
from webhook_service.notify.endpoints import Endpoint
from webhook_service.notify.pinging import PingInFlight, send_test_event
from webhook_service.notify.sinks import Verdict
from webhook_service.web.auth import current_scope
from webhook_service.web.context import current_services as services
from webhook_service.web.dashboard.activity_chart import DeliveryShare, attempts_chart
from webhook_service.web.dashboard.charts import BarChart

log = logging.getLogger(__name__)

CHART_SIZE = (420, 150)
RECENT_ATTEMPTS = 5


@dataclass(frozen=True)
class Panel(DeliveryShare):
    endpoint: Endpoint
    chart: BarChart
    attempts: int
    delivered: int
    recent: list[dict[str, Any]]


def _panel(endpoint: Endpoint) -> Panel:
    store = services().endpoints
    hours = store.last_hours(endpoint.id)
    return Panel(
        endpoint,
        attempts_chart(hours, CHART_SIZE),
        sum(hour.attempts for hour in hours),
        sum(hour.delivered for hour in hours),
        store.attempts(endpoint.id)[:RECENT_ATTEMPTS],
    )


def endpoints_page(new_secret: tuple[str, str] | None = None) -> str:
    """`new_secret`: (endpoint id, secret) just rotated, shown once."""
    return render_template(
        "dashboard/endpoints.html",
        panels=[_panel(endpoint) for endpoint in services().endpoints.list(current_scope())],
        new_secret=new_secret,
        now=now_ms(),
    )


def _missing(endpoint_id: str) -> ResponseReturnValue:
    flash(f"There is no endpoint {endpoint_id}.", "error")
    return redirect(url_for(".endpoints_page"))


def set_enabled(endpoint_id: str) -> ResponseReturnValue:
    enabled = request.form.get("enabled") == "1"
    changed = services().endpoints.update(endpoint_id, current_scope(), {"enabled": enabled})
    if changed is None:
        return _missing(endpoint_id)
    log.info("dashboard: endpoint %s %s", endpoint_id, "enabled" if enabled else "disabled")
    flash(f"Endpoint {endpoint_id} {'enabled' if enabled else 'disabled'}.", "ok")
    return redirect(url_for(".endpoints_page"))


def rotate_secret(endpoint_id: str) -> ResponseReturnValue:
    rotated = services().endpoints.rotate(endpoint_id, current_scope())
    if rotated is None:
        return _missing(endpoint_id)
    log.info("dashboard: endpoint %s's secret rotated", endpoint_id)
    return endpoints_page(new_secret=(endpoint_id, rotated[1]))


def send_test(endpoint_id: str) -> ResponseReturnValue:
    endpoint = services().endpoints.get(endpoint_id, current_scope())
    if endpoint is None:
        return _missing(endpoint_id)
    try:
        result = send_test_event(services(), endpoint)
    except PingInFlight as busy:
        flash(f"Test event not sent: {busy}.", "error")
        return redirect(url_for(".endpoints_page"))
    answer = result.error or f"HTTP {result.status_code}"
    delivered = result.verdict is Verdict.DELIVERED
    flash(f"Test event to {endpoint_id}: {answer} in {result.latency_ms} ms.", "ok" if delivered else "error")
    return redirect(url_for(".endpoints_page"))
