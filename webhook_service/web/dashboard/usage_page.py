"""The dashboard's Usage page: the units each day's tasks spent, by model, as a chart, and the tasks by
final status beside it. Scoped like `GET /v1/usage`: a tenant sees its own, an admin every tenant's
(one chart each) or the one it picks."""

from __future__ import annotations

from flask import render_template, request

from webhook_service.domain.usage import BadUsageQuery, report, tenants_to_show
from webhook_service.web.auth import current_scope
from webhook_service.web.context import current_services as services
from webhook_service.web.dashboard.usage_chart import status_chart, units, units_chart


def usage_page() -> str:
    svc = services()
    scope = current_scope()
    asked = (request.args.get("tenant") or None) if scope.admin else None
    first, last = request.args.get("from"), request.args.get("to")
    error = None
    try:
        found = report(svc.redis, svc.keys, scope, first=first, last=last, tenant=asked)
    except BadUsageQuery as problem:
        error = f"{problem.field}: {problem}"
        asked = None
        found = report(svc.redis, svc.keys, scope)
    charts = [
        (used, units_chart(used, found.period), status_chart(used))
        for used in found.tenants
        if used.days or not scope.admin or asked
    ]
    return render_template(
        "dashboard/usage.html",
        period=found.period,
        charts=charts,
        error=error,
        tenants=tenants_to_show(svc.redis, svc.keys, scope, None) if scope.admin else [],
        asked=asked,
        units=units,
    )
