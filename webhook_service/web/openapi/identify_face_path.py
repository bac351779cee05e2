"""The OpenAPI path item of identify-face (web/identify_face.py), at `/v1/...` and `/kling/v1/...`:
no task type, so drop_in_paths does not make it; its body schema comes from its rules all the same."""

from __future__ import annotations

from typing import Any

from webhook_service.config import Settings
from webhook_service.domain.body_rules import body_json_schema
from webhook_service.domain.lip_sync_rules import IDENTIFY_FACE
from webhook_service.web.identify_face import PATH
from webhook_service.web.openapi.paths import JSON, _answer, _errors, _op
from webhook_service.web.openapi.schemas import INTEGER, REF, STRING, envelope, obj

_FACE = obj(
    {
        "face_id": STRING,
        "face_image": {**STRING, "description": "a picture of the face (a URL)"},
        "start_time": {**INTEGER, "description": "ms from the video's start: where lip-sync may begin"},
        "end_time": {**INTEGER, "description": "ms from the video's start: where it must end"},
    }
)
_FACES = obj({"session_id": STRING, "face_data": {"type": "array", "items": _FACE}})


def identify_face_paths(settings: Settings) -> dict[str, Any]:
    body, _ = body_json_schema(IDENTIFY_FACE, settings.kling_extra_fields, ref_template=REF)
    paths = {}
    for prefix, suffix in (("", ""), ("/kling", "ViaGateway")):
        operation = _op(
            "Kling API",
            "Identify the faces of a video (synchronous: no task; Kling's answer passed on unchanged)",
            {
                "200": _answer(
                    "Kling's envelope as Kling sent it: the session and its faces", envelope(_FACES)
                ),
                **_errors("400", "401", "429", "413", "4XX", "5XX"),
            },
            operationId=f"identifyFace{suffix}",
            description="Checked, then sent to Kling at once with the account's credentials. A video_id "
            "must be a video of one of your own tasks (any other is refused: not_yours). No task is "
            "recorded and no concurrency slot is taken; the session is yours for 24 hours: name it and a "
            "face_id in an advanced-lip-sync task.",
            requestBody={"required": True, "content": {JSON: {"schema": body}}},
        )
        paths[prefix + PATH] = {"post": operation}
    return paths
