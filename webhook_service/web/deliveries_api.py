"""`/v1/deliveries`: what was sent where, the dead letters, and sending them again.

A replay sends the stored event again with the same `webhook-id`, so a receiver that already has it can
tell. URLs are shown without path or query: webhook URLs often carry their secret there.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from webhook_service.domain.clock import parse_since
from webhook_service.domain.errors import NotReplayable
from webhook_service.notify.deliveries import DeliveryStore
from webhook_service.notify.records import DeliveryStatus
from webhook_service.web.auth import current_scope, require_client
from webhook_service.web.context import current_services as services
from webhook_service.web.errors import CODE_CONFLICT, CODE_NOT_FOUND, ApiError, envelope
from webhook_service.web.params import Query, check_query, query, takes

bp = Blueprint("deliveries", __name__, url_prefix="/v1/deliveries")

LIMIT_MAX = 500
SINCE_RULE = "an ISO 8601 time or a duration like 30m, 2h, 1d"


def store() -> DeliveryStore:
    return services().deliveries


@bp.before_request
def authenticate() -> None:
    require_client(services())


bp.before_request(check_query)


def _status_arg(asked: Query, choices: list[DeliveryStatus]) -> DeliveryStatus | None:
    raw = asked.choice("status", [status.value for status in choices])
    return DeliveryStatus(raw) if raw else None


def _endpoint_arg(endpoint_id: str | None) -> str | None:
    """`?endpoint=ep_...`: one of the caller's endpoints (notify/endpoints.py); another tenant's answers
    404, as a missing or deleted one does."""
    if not endpoint_id:
        return None
    if services().endpoints.get(endpoint_id, current_scope()) is None:
        raise ApiError(404, CODE_NOT_FOUND, f"no endpoint {endpoint_id!r}")
    return endpoint_id


@bp.get("")
@takes("task", "status", "since", "offset", "limit", "endpoint")
def list_deliveries() -> Response:
    """Newest first; `?status=failed` lists the dead letters (by when they failed), `?since=` bounds it,
    `?task=` and `?endpoint=` narrow it to one task's or one endpoint's."""
    asked = query()
    task_ref = asked.text("task")
    status = _status_arg(asked, list(DeliveryStatus))
    since_ms = asked.parsed("since", parse_since)
    offset = asked.integer("offset", 0, 1_000_000, 0)
    limit = asked.integer("limit", 1, LIMIT_MAX, 50)
    endpoint_ref = asked.text("endpoint")
    asked.done()
    endpoint = _endpoint_arg(endpoint_ref)
    task = None
    if task_ref:
        found_task = services().store.find(task_ref, current_scope())
        if found_task is None:  # none of the caller's: nothing to list, as for a task without deliveries
            return jsonify(envelope(0, "SUCCEED", []))
        task = found_task.external_task_id
    found = store().list(
        status=status,
        since_ms=since_ms,
        task=task,
        offset=offset,
        limit=limit,
        scope=current_scope(),
        endpoint=endpoint,
    )
    return jsonify(envelope(0, "SUCCEED", [delivery.view() for delivery in found]))


@bp.get("/<delivery_id>")
def get_delivery(delivery_id: str) -> Response:
    delivery = store().get(delivery_id, current_scope())
    if delivery is None:
        raise ApiError(404, CODE_NOT_FOUND, f"no delivery {delivery_id!r}")
    return jsonify(envelope(0, "SUCCEED", {**delivery.view(), "attempt_log": store().attempts(delivery_id)}))


@bp.post("/<delivery_id>/replay")
def replay_one(delivery_id: str) -> Response:
    try:
        delivery = store().replay(delivery_id, current_scope())
    except NotReplayable as error:
        raise ApiError(409, CODE_CONFLICT, str(error)) from None
    if delivery is None:
        raise ApiError(404, CODE_NOT_FOUND, f"no delivery {delivery_id!r}")
    return jsonify(envelope(0, "SUCCEED", delivery.view()))


@bp.post("/replay")
@takes("since", "status", "endpoint")
def replay_since() -> Response:
    """`?since=2h` (required) and `?status=failed` (default) or `skipped`; `?endpoint=ep_...`: that
    endpoint's only, the recovery once it is fixed."""
    asked = query()
    since_ms = asked.parsed("since", parse_since)
    if not asked.text("since"):
        asked.refuse("since", f"required: {SINCE_RULE}", "missing")
    status = _status_arg(asked, [DeliveryStatus.FAILED, DeliveryStatus.SKIPPED]) or DeliveryStatus.FAILED
    endpoint_ref = asked.text("endpoint")
    asked.done()
    endpoint = _endpoint_arg(endpoint_ref)
    replayed, refused = store().replay_since(since_ms or 0, status, current_scope(), endpoint)
    return jsonify(envelope(0, "SUCCEED", {"replayed": replayed, "not_replayed": refused}))


@bp.get("/disabled-endpoints")
def disabled_endpoints() -> Response:
    return jsonify(envelope(0, "SUCCEED", store().disabled_endpoints(current_scope())))


@bp.delete("/disabled-endpoints/<endpoint>")
@bp.delete("/disabled-endpoints", defaults={"endpoint": None})
@takes("url")
def enable_endpoint(endpoint: str | None) -> Response:
    """By the `ep_...` id the listing shows, or `?url=` with the whole URL."""
    asked = query()
    url = asked.text("url")
    asked.done()
    name = endpoint or url
    if not name or not store().enable(name, current_scope()):
        raise ApiError(404, CODE_NOT_FOUND, "no such disabled endpoint")
    return jsonify(envelope(0, "SUCCEED", {"enabled": True}))
