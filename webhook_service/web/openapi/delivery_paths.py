"""The OpenAPI paths of notification deliveries (web/deliveries_api.py): the list and the dead letters,
one delivery and its attempts, replays (one, or all since a time), and URLs disabled after a 410."""

from __future__ import annotations

from typing import Any

from webhook_service.notify.records import DeliveryStatus
from webhook_service.web.openapi.paths import _answer, _errors, _op, _param
from webhook_service.web.openapi.schemas import STRING, envelope, obj, ref


def delivery_paths() -> dict[str, Any]:
    delivery_id = _param("delivery_id", "path", {"type": "string", "minLength": 1})
    status = {"enum": [s.value for s in DeliveryStatus]}
    since = {
        "type": "string",
        "description": "ISO 8601 time, or a duration back from now: 90s, 30m, 2h, 1d, 1w",
    }
    ok = envelope(obj({"enabled": {"const": True}}))
    endpoint = _param(
        "endpoint",
        "query",
        {"type": "string", "minLength": 1},
        "ep_...: that endpoint's deliveries only; another tenant's endpoint is a 404, as a missing one",
    )
    return {
        "/v1/deliveries": {
            "get": _op(
                "Deliveries",
                "Notification deliveries, newest first (status=failed: the dead letters)",
                {
                    "200": _answer("a page", envelope({"type": "array", "items": ref("Delivery")})),
                    **_errors("400", "401", "429", "404", "503"),
                },
                operationId="listDeliveries",
                parameters=[
                    _param("status", "query", status),
                    _param("since", "query", since),
                    _param("task", "query", STRING, "external_task_id"),
                    endpoint,
                    _param(
                        "offset",
                        "query",
                        {"type": "integer", "minimum": 0, "maximum": 1_000_000, "default": 0},
                    ),
                    _param(
                        "limit", "query", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}
                    ),
                ],
            )
        },
        "/v1/deliveries/{delivery_id}": {
            "get": _op(
                "Deliveries",
                "One delivery with its attempts",
                {
                    "200": _answer("the delivery", envelope(ref("DeliveryWithAttempts"))),
                    **_errors("400", "401", "429", "404", "503"),
                },
                operationId="getDelivery",
                parameters=[delivery_id],
            )
        },
        "/v1/deliveries/{delivery_id}/replay": {
            "post": _op(
                "Deliveries",
                "Send a failed or skipped delivery again, with the same webhook-id",
                {
                    "200": _answer("queued again", envelope(ref("Delivery"))),
                    **_errors("400", "401", "429", "404", "409", "503"),
                },
                operationId="replayDelivery",
                parameters=[delivery_id],
            )
        },
        "/v1/deliveries/replay": {
            "post": _op(
                "Deliveries",
                "Send every delivery that failed (or was skipped) since a time again",
                {
                    "200": _answer(
                        "what was replayed, and why the others were not",
                        envelope(
                            obj(
                                {
                                    "replayed": {"type": "array", "items": STRING},
                                    "not_replayed": {"type": "object", "additionalProperties": STRING},
                                }
                            )
                        ),
                    ),
                    **_errors("400", "401", "429", "404", "503"),
                },
                operationId="replayDeliveriesSince",
                parameters=[
                    _param("since", "query", since, required=True),
                    _param("status", "query", {"enum": ["failed", "skipped"], "default": "failed"}),
                    endpoint,
                ],
            )
        },
        "/v1/deliveries/disabled-endpoints": {
            "get": _op(
                "Deliveries",
                "Endpoints disabled after answering 410 Gone",
                {
                    "200": _answer("the list", envelope({"type": "array", "items": ref("DisabledEndpoint")})),
                    **_errors("400", "401", "429", "503"),
                },
                operationId="listDisabledEndpoints",
            ),
            "delete": _op(
                "Deliveries",
                "Enable an endpoint again, by its whole URL",
                {"200": _answer("enabled", ok), **_errors("400", "401", "429", "404", "503")},
                operationId="enableEndpointByUrl",
                parameters=[_param("url", "query", STRING, required=True)],
            ),
        },
        "/v1/deliveries/disabled-endpoints/{endpoint}": {
            "delete": _op(
                "Deliveries",
                "Enable an endpoint again, by the ep_... id the list shows",
                {"200": _answer("enabled", ok), **_errors("400", "401", "429", "404", "503")},
                operationId="enableEndpoint",
                parameters=[_param("endpoint", "path", {"type": "string", "minLength": 1})],
            )
        },
    }
