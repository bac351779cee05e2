"""The OpenAPI document's `/v1/endpoints` paths and their answers' schemas, after web/endpoints_api.py,
and `/v1/callback-secret` (web/callback_secret_api.py).

Kept apart from paths.py and schemas.py, whose helpers it uses, as one unit: what a tenant's receivers
get, and the secrets they check it with.
"""

from __future__ import annotations

from typing import Any

from webhook_service.domain.events import EVENT_TYPES
from webhook_service.notify.endpoint_fields import DESCRIPTION_MAX, RATE_LIMIT_MAX, URL_MAX
from webhook_service.notify.sinks import Verdict
from webhook_service.web.openapi.paths import JSON, _answer, _errors, _op, _param
from webhook_service.web.openapi.schemas import INTEGER, MS, STRING, envelope, nullable, obj, ref

TAG = "Endpoints"
_PROPERTIES = {
    "id": {"type": "string", "description": "ep_..."},
    "tenant": STRING,
    "url": STRING,
    "event_types": {"type": "array", "items": {"enum": list(EVENT_TYPES)}},
    "description": STRING,
    "rate_limit_per_s": nullable({"type": "number"}),
    "enabled": {"type": "boolean"},
    "disabled_at": nullable(MS),
    "disabled_reason": nullable(
        {
            "type": "string",
            "description": "gone (410), failing (ENDPOINT_DISABLE_AFTER_S), requested, or deleted (a "
            "deletion cut short: delete it again)",
        }
    ),
    "failing_since": nullable({**MS, "description": "its first failed attempt since its last success"}),
    "old_secret_until": nullable({**MS, "description": "the rotated-out secret signs too until then"}),
    "created_at": MS,
    "updated_at": MS,
}
_SECRET = {"type": "string", "description": "whsec_...: shown in this answer only"}
_ATTEMPT = obj(
    {
        "at": MS,
        "status_code": nullable(INTEGER),
        "error": nullable(STRING),
        "latency_ms": INTEGER,
        "response": STRING,
        "verdict": {"enum": [v.value for v in Verdict]},
    }
)
_CALLBACK_SECRET = {
    "type": "string",
    "description": "whsec_...: checks the signature of the caller's tenant's callback_url deliveries "
    "(Standard Webhooks); derived from NOTIFY_WEBHOOK_SECRET and the tenant's name, so it changes with "
    "that secret",
}
SCHEMAS: dict[str, Any] = {
    "Endpoint": obj(_PROPERTIES),
    "EndpointWithSecret": obj({**_PROPERTIES, "secret": _SECRET}),
    "EndpointWithAttempts": obj({**_PROPERTIES, "attempt_log": {"type": "array", "items": _ATTEMPT}}),
    "EndpointAttempt": _ATTEMPT,
    "CallbackSecret": obj({"tenant": STRING, "secret": _CALLBACK_SECRET}),
}
_FIELDS = {
    "url": {"type": "string", "maxLength": URL_MAX, "description": "http(s); not an internal address"},
    "event_types": {
        "anyOf": [{"type": "array", "items": {"enum": list(EVENT_TYPES)}}, {"type": "null"}],
        "description": "null or empty: every event",
    },
    "description": {"type": "string", "maxLength": DESCRIPTION_MAX},
    "rate_limit_per_s": {
        "anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": RATE_LIMIT_MAX}, {"type": "null"}],
        "description": "attempts a second, fractions honoured (1.5: three every 2 s); deliveries beyond it "
        "wait their turn; attempts go one at a time, so the receiver's latency caps them too; null: no limit",
    },
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": schema}}}


def endpoint_paths() -> dict[str, Any]:
    endpoint_id = _param("endpoint_id", "path", {"type": "string", "minLength": 1})
    one = envelope(ref("Endpoint"))
    return {
        "/v1/endpoints": {
            "post": _op(
                TAG,
                "Register a webhook endpoint of the caller's tenant; its secret is shown once",
                {
                    "201": _answer("created", envelope(ref("EndpointWithSecret"))),
                    **_errors("400", "401", "429", "413", "503"),
                },
                operationId="createEndpoint",
                requestBody=_body(obj(_FIELDS, required=["url"], additionalProperties=False)),
            ),
            "get": _op(
                TAG,
                "The caller's tenant's endpoints (an admin: every tenant's)",
                {
                    "200": _answer("the list", envelope({"type": "array", "items": ref("Endpoint")})),
                    **_errors("400", "401", "429", "503"),
                },
                operationId="listEndpoints",
            ),
        },
        "/v1/endpoints/{endpoint_id}": {
            "get": _op(
                TAG,
                "One endpoint with its last attempts",
                {
                    "200": _answer("the endpoint", envelope(ref("EndpointWithAttempts"))),
                    **_errors("400", "401", "429", "404", "503"),
                },
                operationId="getEndpoint",
                parameters=[endpoint_id],
            ),
            "patch": _op(
                TAG,
                "Change an endpoint; `enabled: true` enables it again",
                {"200": _answer("changed", one), **_errors("400", "401", "429", "404", "413", "503")},
                operationId="updateEndpoint",
                parameters=[endpoint_id],
                requestBody=_body(
                    obj({**_FIELDS, "enabled": {"type": "boolean"}}, required=[], additionalProperties=False)
                ),
            ),
            "delete": _op(
                TAG,
                "Remove an endpoint",
                {
                    "200": _answer(
                        "removed; its pending deliveries are dead letters (reason endpoint_deleted)",
                        envelope(obj({"deleted": {"const": True}, "dead_letters": INTEGER})),
                    ),
                    **_errors("400", "401", "429", "404", "503"),
                },
                operationId="deleteEndpoint",
                parameters=[endpoint_id],
            ),
        },
        "/v1/endpoints/{endpoint_id}/rotate-secret": {
            "post": _op(
                TAG,
                "A new secret, shown once; the old one keeps signing beside it for 24 hours",
                {
                    "200": _answer("rotated", envelope(ref("EndpointWithSecret"))),
                    **_errors("400", "401", "429", "404", "503"),
                },
                operationId="rotateEndpointSecret",
                parameters=[endpoint_id],
            )
        },
        "/v1/callback-secret": {
            "get": _op(
                TAG,
                "The secret the caller's tenant checks its callback_url deliveries' signatures with",
                {
                    "200": _answer("the secret", envelope(ref("CallbackSecret"))),
                    **_errors("400", "401", "429", "404", "503"),
                },
                operationId="getCallbackSecret",
                description="404 when the service has no NOTIFY_WEBHOOK_SECRET: callback_url deliveries "
                "then go unsigned.",
            )
        },
        "/v1/endpoints/{endpoint_id}/test": {
            "post": _op(
                TAG,
                "Send a signed `ping` event at once; the answer is the attempt",
                {
                    "200": _answer("the attempt", envelope(ref("EndpointAttempt"))),
                    **_errors("400", "401", "429", "404", "409", "503"),
                },
                description="Sent while the request waits, for at most 10 s (NOTIFY_TIMEOUT_S when "
                "shorter); one at a time per endpoint: another while one is in flight is a 409 whose "
                "`errors` carries the code `test_in_flight`.",
                operationId="testEndpoint",
                parameters=[endpoint_id],
            )
        },
    }
