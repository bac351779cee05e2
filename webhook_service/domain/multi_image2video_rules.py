"""The create body of Kling's multi-image to video API (``POST /v1/videos/multi-image2video``): one to four
reference images (the elements) and a prompt, made into one video (docs/kling-endpoints.md names the
sources and where they disagree). domain/body_rules.py applies them, through domain/task_types.py.

* ``image_list`` is required: 1 to 4 objects ``{"image": <URL or Base64>}``, Kling's key:value form, so
  a bare string is refused with a message showing the form. Each image is checked as images are
  everywhere (URL or raw Base64 of at most 10 MB; pixels and aspect left to Kling). Kling does not crop
  the subjects: that is the caller's work, and not checkable here.
* ``prompt`` is required and not empty (at most 2500 characters): Kling's reference and most gateways
  mark it required; a video from elements with nothing said of what they do is not what anyone pays for.
* ``model_name`` is ``kling-v1-6`` only, its default: the one model every source names for this type.
* ``mode``, ``duration`` and ``aspect_ratio`` are text-to-video's. No ``cfg_scale``, ``image_tail``,
  ``camera_control`` or masks: some gateway pages copy them from image2video, Kling's reference does not
  list them; refused as unknown, they pass with KLING_EXTRA_FIELDS.
"""

from typing import Annotated

from pydantic import StringConstraints

from webhook_service.domain.body_rules import BodyRules
from webhook_service.domain.field_types import (
    COMMON_FIELDS,
    PROMPT_MAX_CHARS,
    Duration,
    Prompt,
    enum,
    image_objects,
)

MODEL_NAMES = ("kling-v1-6",)
DEFAULT_MODEL = "kling-v1-6"
MAX_IMAGES = 4
ASPECT_RATIOS = ("16:9", "9:16", "1:1")


_Elements = image_objects("image_list", "image", MAX_IMAGES)

RULES = BodyRules(
    field_types={
        "model_name": enum(*MODEL_NAMES),
        "image_list": _Elements,
        "prompt": Annotated[str, StringConstraints(strict=True, min_length=1, max_length=PROMPT_MAX_CHARS)],
        "negative_prompt": Prompt,
        "mode": enum("std", "pro"),
        "duration": Duration,
        "aspect_ratio": enum(*ASPECT_RATIOS),
        **COMMON_FIELDS,
    },
    required=("image_list", "prompt"),
    default_model=DEFAULT_MODEL,
    description=(
        f"Kling's multi-image to video create body: 1 to {MAX_IMAGES} reference images as "
        '[{"image": <image>}], each an http(s) URL or raw Base64 up to 10 MB, and a prompt; one video.'
    ),
)
