"""`/v1/endpoints`: a tenant's own webhook endpoints (notify/endpoints.py), managed through the API.

Every route is scoped: another tenant's endpoint answers 404 exactly as a missing one does, and an
admin sees and acts on every tenant's. A secret is in the answer that makes it (create, rotate) and
never again.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from webhook_service.domain.validation import RequestInvalid
from webhook_service.notify.endpoint_deletion import delete_endpoint
from webhook_service.notify.endpoint_fields import checked
from webhook_service.notify.endpoints import Endpoint, EndpointStore
from webhook_service.notify.pinging import PingInFlight, send_test_event
from webhook_service.web.auth import current_scope, require_client
from webhook_service.web.context import current_services as services
from webhook_service.web.errors import (
    CODE_BAD_REQUEST,
    CODE_CONFLICT,
    CODE_NOT_FOUND,
    ApiError,
    envelope,
    json_object,
    whole_body,
)
from webhook_service.web.params import check_query

bp = Blueprint("endpoints", __name__, url_prefix="/v1/endpoints")


def store() -> EndpointStore:
    return services().endpoints


@bp.before_request
def authenticate() -> None:
    require_client(services())


bp.before_request(check_query)  # no route here takes any


def _fields(*, creating: bool) -> dict[str, Any]:
    body = json_object(whole_body(request), "the request body", request.content_type)
    try:
        return checked(body, services().settings.notify_allowed_hosts, creating=creating)
    except RequestInvalid as invalid:
        problems = [p.as_dict() for p in invalid.problems]
        raise ApiError(400, CODE_BAD_REQUEST, f"invalid request: {invalid}", errors=problems) from None


def _found(endpoint: Endpoint | None, endpoint_id: str) -> Endpoint:
    if endpoint is None:
        raise ApiError(404, CODE_NOT_FOUND, f"no endpoint {endpoint_id!r}")
    return endpoint


def _answer(data: Any, status: int = 200) -> tuple[Response, int]:
    return jsonify(envelope(0, "SUCCEED", data)), status


@bp.post("")
def create() -> tuple[Response, int]:
    endpoint, secret = store().create(current_scope().tenant, _fields(creating=True))
    return _answer({**endpoint.view(), "secret": secret}, 201)


@bp.get("")
def list_endpoints() -> tuple[Response, int]:
    return _answer([endpoint.view() for endpoint in store().list(current_scope())])


@bp.get("/<endpoint_id>")
def get_one(endpoint_id: str) -> tuple[Response, int]:
    endpoint = _found(store().get(endpoint_id, current_scope()), endpoint_id)
    return _answer({**endpoint.view(), "attempt_log": store().attempts(endpoint_id)})


@bp.patch("/<endpoint_id>")
def update(endpoint_id: str) -> tuple[Response, int]:
    _found(store().get(endpoint_id, current_scope()), endpoint_id)  # 404 before 400, as for a missing one
    changed = store().update(endpoint_id, current_scope(), _fields(creating=False))
    return _answer(_found(changed, endpoint_id).view())


@bp.delete("/<endpoint_id>")
def delete(endpoint_id: str) -> tuple[Response, int]:
    """Its pending deliveries become dead letters (notify/endpoint_deletion.py): how many."""
    dead_letters = delete_endpoint(services(), endpoint_id, current_scope())
    if dead_letters is None:
        raise ApiError(404, CODE_NOT_FOUND, f"no endpoint {endpoint_id!r}")
    return _answer({"deleted": True, "dead_letters": dead_letters})


@bp.post("/<endpoint_id>/rotate-secret")
def rotate_secret(endpoint_id: str) -> tuple[Response, int]:
    rotated = store().rotate(endpoint_id, current_scope())
    if rotated is None:
        raise ApiError(404, CODE_NOT_FOUND, f"no endpoint {endpoint_id!r}")
    endpoint, secret = rotated
    return _answer({**endpoint.view(), "secret": secret})


@bp.post("/<endpoint_id>/test")
def send_test(endpoint_id: str) -> tuple[Response, int]:
    """A signed `ping` at once, whether the endpoint is enabled or not: the answer is the attempt. One
    at a time per endpoint (notify/pinging.py): another while one is in flight is a 409."""
    endpoint = _found(store().get(endpoint_id, current_scope()), endpoint_id)
    try:
        result = send_test_event(services(), endpoint)
    except PingInFlight as busy:
        problem = {"field": "", "code": "test_in_flight", "message": str(busy)}
        raise ApiError(409, CODE_CONFLICT, str(busy), errors=[problem]) from None
    return _answer(result.record())
