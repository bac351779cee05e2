"""`GET /openapi.json`: the OpenAPI 3.1 document of every endpoint, and `GET /docs`, a page that reads it.

Each task type's create body schema comes from its rules (domain/task_types.py: the types that
validate requests), so the two cannot disagree; the answers' schemas are in schemas.py, the paths in
paths.py. The document describes this deployment: the extra fields it lets through and whether it
asks for client credentials. The docs page is a small renderer of our own, in one file with no CDN:
the service and its users may have no internet.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from flask import Blueprint, Response, jsonify

from webhook_service.config import Settings
from webhook_service.domain.body_rules import body_json_schema
from webhook_service.domain.task_types import TASK_TYPES
from webhook_service.web.auth import client_auth_required
from webhook_service.web.context import current_services
from webhook_service.web.openapi.delivery_paths import delivery_paths
from webhook_service.web.openapi.endpoint_paths import SCHEMAS as ENDPOINT_SCHEMAS
from webhook_service.web.openapi.endpoint_paths import endpoint_paths
from webhook_service.web.openapi.event_paths import event_paths
from webhook_service.web.openapi.identify_face_path import identify_face_paths
from webhook_service.web.openapi.paths import drop_in_paths, service_paths
from webhook_service.web.openapi.schemas import COMPONENTS, REF
from webhook_service.web.openapi.unified_paths import unified_paths


def document(settings: Settings, *, auth_required: bool) -> dict[str, Any]:
    """`auth_required`: whether callers must authenticate now (web/auth.py client_auth_required)."""
    paths, nested = {}, {}
    for kind in TASK_TYPES.values():
        if kind.unified:
            continue  # Kling's unified API: its create paths and /tasks are unified_paths'
        body, shapes = body_json_schema(kind.rules, settings.kling_extra_fields, ref_template=REF)
        nested.update(shapes)
        for prefix, suffix in (("", ""), ("/kling", "ViaGateway")):
            paths.update({prefix + path: item for path, item in drop_in_paths(kind, body, suffix).items()})
    unified, unified_shapes = unified_paths(settings)
    paths.update(unified)
    nested.update(unified_shapes)
    paths.update(identify_face_paths(settings))
    paths.update(service_paths(settings))
    paths.update(delivery_paths())
    paths.update(endpoint_paths())
    paths.update(event_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Kling webhook service",
            "version": "1",
            "description": "A drop-in front for Kling's task API (image-to-video, text-to-video, "
            "multi-image to video, image generation, virtual try-on, multi-image to image, image "
            "expansion): the same paths and bodies, "
            "answers in Kling's envelope `{code, message, request_id, data}`. "
            "The service's own routes (`/v1/tasks`, `/v1/deliveries`, `/v1/events`, `/v1/endpoints`, "
            "`/v1/usage`) refuse a query parameter they do not take, and answer every problem of a query "
            "in one 400. "
            + (
                "Clients send `Authorization: Bearer <API key or JWT>`."
                if auth_required
                else "This deployment is open."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": {**nested, **COMPONENTS, **ENDPOINT_SCHEMAS},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a client key (SERVICE_API_KEYS, or made by `flask clients create`), "
                    "or an HS256 JWT (iss = SERVICE_ACCESS_KEY, or a client's access key)",
                }
            },
        },
        "security": [{"bearer": []}] if auth_required else [],
    }


bp = Blueprint("openapi", __name__)
_DOCS_PAGE = resources.files(__name__).joinpath("docs.html").read_text(encoding="utf-8")


@bp.get("/openapi.json")
def openapi_json() -> Response:
    svc = current_services()
    return jsonify(document(svc.settings, auth_required=client_auth_required(svc.settings, svc.clients)))


@bp.get("/docs")
def docs() -> Response:
    return Response(_DOCS_PAGE, content_type="text/html; charset=utf-8")
