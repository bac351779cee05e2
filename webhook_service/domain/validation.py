"""The create body of Kling's image-to-video API (``POST /v1/videos/image2video``): its fields and
the rules Kling documents for them. domain/body_rules.py applies them (every problem at once, unknown
fields refused with a hint, KLING_EXTRA_FIELDS); domain/field_types.py holds the field types every
task type shares.

Decisions where the documentation leaves room, besides the shared ones (domain/field_types.py):

* Images (``image``, ``image_tail``, ``static_mask``, ``dynamic_masks[].mask``) are checked as
  images are everywhere; mask resolution is left to Kling, which reads the image anyway.
* kling-v3's durations (``"3"`` to ``"15"``) and multi-shot fields are domain/v1_multi_shot.py's, as
  for text-to-video; ``sound`` is kling-v2-6's and kling-v3's, ``voice_list`` kling-v2-6's only (Kling's
  capability map gives voice control to 2.6 alone; docs/kling-endpoints.md).
"""

from typing import Annotated, Any

from pydantic import Field, Strict

from webhook_service.domain import v1_multi_shot
from webhook_service.domain.body_rules import BodyRules, validate_body
from webhook_service.domain.field_types import (
    CAMERA_TYPES,
    COMMON_FIELDS,
    MAX_IMAGE_BYTES,
    MAX_VOICES,
    CameraControl,
    CfgScale,
    Image,
    Prompt,
    VoiceId,
    enum,
    is_http_url,
    shape,
)
from webhook_service.domain.problems import FieldProblem, RequestInvalid

# Re-exported: callers validate through this module, as they did before the rules were shared.
__all__ = [
    "CAMERA_TYPES",
    "KNOWN_FIELDS",
    "MAX_IMAGE_BYTES",
    "MODEL_NAMES",
    "RULES",
    "FieldProblem",
    "RequestInvalid",
    "is_http_url",
    "validate_image2video",
]

MODEL_NAMES = (
    "kling-v1",
    "kling-v1-5",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1",
    "kling-v2-1-master",
    "kling-v2-5",
    "kling-v2-5-turbo",
    "kling-v2-6",
    v1_multi_shot.V3,
)
DEFAULT_MODEL = "kling-v1"
# At most one of these groups per request: first + last frame, motion brush, camera control.
_EXCLUSIVE_GROUPS = (("image_tail",), ("static_mask", "dynamic_masks"), ("camera_control",))

_Voice = shape("voice_list", {"voice_id": VoiceId})
_Point = shape("trajectories", {"x": int, "y": int})
_Trajectory = Annotated[list[_Point], Field(min_length=2, max_length=77)]  # type: ignore[valid-type]
_DynamicMask = shape("dynamic_masks", {"mask": Image, "trajectories": _Trajectory})


def _exclusive(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    used = ["/".join(present) for group in _EXCLUSIVE_GROUPS if (present := [f for f in group if f in body])]
    if len(used) <= 1:
        return []
    groups = "image_tail (first + last frame), static_mask/dynamic_masks (motion brush), camera_control"
    return [FieldProblem("", "exclusive", f"use at most one of {groups}; got {', '.join(used)}")]


def _voices_need_sound(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    if "voice_list" in body and ("sound" in valid or "sound" not in body) and valid.get("sound") != "on":
        return [FieldProblem("voice_list", "requires", 'requires sound set to "on"')]
    return []


RULES = BodyRules(
    field_types={
        "model_name": enum(*MODEL_NAMES),
        "image": Image,
        "image_tail": Image,
        "prompt": Prompt,
        "negative_prompt": Prompt,
        "voice_list": Annotated[list[_Voice], Strict(), Field(max_length=MAX_VOICES)],  # type: ignore[valid-type]
        "sound": enum("on", "off"),
        "cfg_scale": CfgScale,
        "mode": enum("std", "pro"),
        "static_mask": Image,
        "dynamic_masks": Annotated[list[_DynamicMask], Strict(), Field(max_length=6)],  # type: ignore[valid-type]
        "camera_control": CameraControl,
        "aspect_ratio": enum("16:9", "9:16", "1:1"),
        "duration": v1_multi_shot.Duration,
        **v1_multi_shot.FIELDS,
        **COMMON_FIELDS,
    },
    required=("image",),
    default_model=DEFAULT_MODEL,
    description=(
        f"Kling's image-to-video create body. Images are an http(s) URL or raw Base64 up to "
        f"{MAX_IMAGE_BYTES // 1024**2} MB. At most one of image_tail, static_mask/dynamic_masks and "
        "camera_control; cfg_scale only with kling-v1, kling-v1-5 and kling-v1-6; sound only with kling-v2-6 "
        "and kling-v3, voice_list only with kling-v2-6; durations other than 5 and 10 s, multi_shot, "
        "shot_type and multi_prompt only with kling-v3 (no image_tail with multi_shot); "
        "camera_control.config with type simple only, exactly one axis non-zero."
    ),
    model_only={
        "sound": ("kling-v2-6", v1_multi_shot.V3),
        "voice_list": ("kling-v2-6",),
        "cfg_scale": MODEL_NAMES[:3],
        **v1_multi_shot.MODEL_ONLY,
    },
    cross_field=(
        _exclusive,
        _voices_need_sound,
        v1_multi_shot.duration_problems(DEFAULT_MODEL),
        v1_multi_shot.shot_problems,
    ),
)
KNOWN_FIELDS = RULES.known_fields


def validate_image2video(
    body: object, *, extra_fields: frozenset[str] | None = None, allowed_hosts: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """An image2video body to forward, or RequestInvalid listing every problem (body_rules.validate_body)."""
    return validate_body(RULES, body, extra_fields=extra_fields, allowed_hosts=allowed_hosts)
