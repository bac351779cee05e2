"""The create body of Kling's text-to-video API (``POST /v1/videos/text2video``): its fields and the
rules Kling documents for them (docs/kling-endpoints.md names the sources). domain/body_rules.py
applies them, as it does image2video's (through domain/task_types.py).

* ``prompt`` is required and not empty: with no image, it is all the video is made from; only a
  kling-v3 multi-shot video whose shots carry their own prompts (``shot_type`` customize) goes without.
* ``model_name`` takes the models Kling and the gateways document for text2video (``kling-v2-1`` and
  ``kling-v2-5`` are image2video's only); ``cfg_scale`` only the v1 models, ``sound`` kling-v2-6 and
  kling-v3.
* kling-v3's durations (``"3"`` to ``"15"``) and multi-shot fields are domain/v1_multi_shot.py's.
"""

from typing import Annotated, Any

from pydantic import StringConstraints

from webhook_service.domain import v1_multi_shot
from webhook_service.domain.body_rules import BodyRules
from webhook_service.domain.field_types import (
    COMMON_FIELDS,
    PROMPT_MAX_CHARS,
    CameraControl,
    CfgScale,
    Prompt,
    enum,
)
from webhook_service.domain.problems import FieldProblem

MODEL_NAMES = (
    "kling-v1",
    "kling-v1-5",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
    v1_multi_shot.V3,
)
DEFAULT_MODEL = "kling-v1"


def _prompt_needed(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    """Required, unless multi_shot is true: then shot_type says whether it is (v1_multi_shot.py)."""
    if "prompt" in body or body.get("multi_shot") is True:
        return []
    return [FieldProblem("prompt", "missing", "is required")]


RULES = BodyRules(
    field_types={
        "model_name": enum(*MODEL_NAMES),
        "prompt": Annotated[str, StringConstraints(strict=True, min_length=1, max_length=PROMPT_MAX_CHARS)],
        "negative_prompt": Prompt,
        "sound": enum("on", "off"),
        "cfg_scale": CfgScale,
        "mode": enum("std", "pro"),
        "camera_control": CameraControl,
        "aspect_ratio": enum("16:9", "9:16", "1:1"),
        "duration": v1_multi_shot.Duration,
        **v1_multi_shot.FIELDS,
        **COMMON_FIELDS,
    },
    required=(),
    default_model=DEFAULT_MODEL,
    description=(
        "Kling's text-to-video create body. prompt is required, unless multi_shot is true with shot_type "
        "customize (the shots' prompts are in multi_prompt). cfg_scale only with kling-v1, kling-v1-5 and "
        "kling-v1-6; sound only with kling-v2-6 and kling-v3; durations other than 5 and 10 s, multi_shot, "
        "shot_type and multi_prompt only with kling-v3; camera_control.config with type simple only, "
        "exactly one axis non-zero."
    ),
    model_only={
        "sound": ("kling-v2-6", v1_multi_shot.V3),
        "cfg_scale": MODEL_NAMES[:3],
        **v1_multi_shot.MODEL_ONLY,
    },
    cross_field=(_prompt_needed, v1_multi_shot.duration_problems(DEFAULT_MODEL), v1_multi_shot.shot_problems),
)
