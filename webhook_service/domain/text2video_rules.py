"""The create body of Kling's text-to-video API (``POST /v1/videos/text2video``): its fields and the
rules Kling documents for them (docs/kling-endpoints.md names the sources). domain/body_rules.py
applies them, as it does image2video's (through domain/task_types.py).

* ``prompt`` is required and not empty: with no image, it is all the video is made from.
* ``model_name`` takes the models Kling and the gateways document for text2video (``kling-v2-1`` and
  ``kling-v2-5`` are image2video's only); ``cfg_scale`` only the v1 models, ``sound`` only kling-v2-6.
* The multi-shot fields (``multi_shot``, ``shot_type``, ``multi_prompt``) appear only in newer gateway
  copies, for newer models: unknown here, they pass with KLING_EXTRA_FIELDS.
"""

from typing import Annotated

from pydantic import StringConstraints

from webhook_service.domain.body_rules import BodyRules
from webhook_service.domain.field_types import (
    COMMON_FIELDS,
    PROMPT_MAX_CHARS,
    CameraControl,
    CfgScale,
    Duration,
    Prompt,
    enum,
)

MODEL_NAMES = (
    "kling-v1",
    "kling-v1-5",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
)
DEFAULT_MODEL = "kling-v1"

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
        "duration": Duration,
        **COMMON_FIELDS,
    },
    required=("prompt",),
    default_model=DEFAULT_MODEL,
    description=(
        "Kling's text-to-video create body. cfg_scale only with kling-v1, kling-v1-5 and kling-v1-6; sound "
        "only with kling-v2-6; camera_control.config with type simple only, exactly one axis non-zero."
    ),
    model_only={"sound": ("kling-v2-6",), "cfg_scale": MODEL_NAMES[:3]},
)
