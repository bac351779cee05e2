"""The create body of Kling's image generation API (``POST /v1/images/generations``): its fields and the
rules Kling documents for them (docs/kling-endpoints.md names the sources and where they disagree).
domain/body_rules.py applies them, as it does the video types' (through domain/task_types.py).

* ``prompt`` is required and not empty, at most 2500 characters (one gateway says 500: Kling says 2500).
* ``image`` (a reference image, URL or Base64) makes it image-to-image: then a ``negative_prompt`` is
  not supported, Kling says, so a non-empty one is refused rather than silently ignored upstream
  (Kling's own example sends ``""`` beside an image, which therefore passes).
* ``image_reference`` (``subject`` or ``face``) only means something with an image, which it requires,
  and kling-v1-5 requires it whenever there is an image. ``human_fidelity`` applies to a subject
  reference only.
* ``n`` (1 to 9 images) may be absent: Kling makes one then. Each image holds one of the image pack's
  concurrency slots upstream.
* ``image_fidelity`` is documented by Kling for kling-v1 and kling-v1-5 only, yet clients send it with
  every model and Kling takes it: not refused here.
"""

from typing import Annotated, Any

from pydantic import Strict, StringConstraints

from webhook_service.domain.body_rules import BodyRules
from webhook_service.domain.field_types import (
    COMMON_FIELDS,
    PROMPT_MAX_CHARS,
    CfgScale,
    Image,
    Prompt,
    between,
    documented,
    enum,
)
from webhook_service.domain.problems import FieldProblem

MODEL_NAMES = ("kling-v1", "kling-v1-5", "kling-v2", "kling-v2-new", "kling-v2-1", "kling-v3")
DEFAULT_MODEL = "kling-v1"
ASPECT_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9")
MAX_IMAGES = 9

# A strength in [0, 1], as cfg_scale is.
Fidelity = CfgScale
Count = Annotated[int, Strict(), between(1, MAX_IMAGES), documented(minimum=1, maximum=MAX_IMAGES)]


def _reference_rules(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    """What the reference image's fields need of each other and of the model."""
    problems = []
    has_image = "image" in body
    if "image_reference" in body and not has_image:
        problems.append(FieldProblem("image", "missing", "is required when image_reference is given"))
    model = valid.get("model_name", DEFAULT_MODEL if "model_name" not in body else None)
    if model == "kling-v1-5" and has_image and "image_reference" not in body:
        message = "is required with kling-v1-5 when an image is given (subject or face)"
        problems.append(FieldProblem("image_reference", "missing", message))
    reference = valid.get("image_reference")
    if "human_fidelity" in body and "image_reference" in valid and reference != "subject":
        message = f'only applies when image_reference is "subject", not "{reference}"'
        problems.append(FieldProblem("human_fidelity", "requires", message))
    elif "human_fidelity" in body and "image_reference" not in body:
        problems.append(FieldProblem("human_fidelity", "requires", 'requires image_reference "subject"'))
    if has_image and valid.get("negative_prompt"):
        message = "is not supported with an image (image-to-image): Kling would not apply it"
        problems.append(FieldProblem("negative_prompt", "not_supported", message))
    return problems


RULES = BodyRules(
    field_types={
        "model_name": enum(*MODEL_NAMES),
        "prompt": Annotated[str, StringConstraints(strict=True, min_length=1, max_length=PROMPT_MAX_CHARS)],
        "negative_prompt": Prompt,
        "image": Image,
        "image_reference": enum("subject", "face"),
        "image_fidelity": Fidelity,
        "human_fidelity": Fidelity,
        "resolution": enum("1k", "2k"),
        "n": Count,
        "aspect_ratio": enum(*ASPECT_RATIOS),
        **COMMON_FIELDS,
    },
    required=("prompt",),
    default_model=DEFAULT_MODEL,
    description=(
        "Kling's image generation create body. image is an http(s) URL or raw Base64 up to 10 MB; "
        "image_reference requires image, and kling-v1-5 requires image_reference with an image; "
        'human_fidelity only with image_reference "subject"; no negative_prompt with an image; '
        f"n from 1 to {MAX_IMAGES} images (1 when absent)."
    ),
    cross_field=(_reference_rules,),
)
