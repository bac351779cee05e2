"""The create body of Kling's image expansion API (``POST /v1/images/editing/expand``, outpainting): one
image grown outwards on each side by a ratio of its own size, into ``n`` images (docs/kling-endpoints.md
names the sources and where they disagree). domain/body_rules.py applies them, through
domain/task_types.py; the count is image generation's (domain/image_rules.py).

* ``image`` is required: a URL or raw Base64 of at most 10 MB (pixels and aspect left to Kling).
* The four ratios (``up``, ``down``, ``left``, ``right``, each ``<side>_expansion_ratio``) are required,
  each a number in [0, 2]: up and down are multiples of the image's height, left and right of its width.
  Kling's reference and every gateway send all four (0 for a side left alone); an absent one would leave
  Kling to guess.
* The new image may be at most 3 times the original's area: (1 + up + down) x (1 + left + right) <= 3.
  It needs no pixel size (the ratios are relative), so it is checked here rather than left to fail
  upstream. Kling's own example, 0.1495 up and down and 0.6547 left and right, comes to 2.9999.
* ``prompt`` is optional (at most 2500 characters; Kling's example sends ""), ``n`` 1 to 9 (1 when
  absent), each image a slot of the image pack. No ``model_name``, ``negative_prompt`` or
  ``aspect_ratio``: the result's shape is the ratios'; refused as unknown, they pass with
  KLING_EXTRA_FIELDS.
"""

from typing import Annotated, Any

from pydantic import Strict

from webhook_service.domain.body_rules import BodyRules
from webhook_service.domain.field_types import COMMON_FIELDS, Image, Prompt, between, documented
from webhook_service.domain.image_rules import MAX_IMAGES, Count
from webhook_service.domain.problems import FieldProblem

SIDES = ("up", "down", "left", "right")
RATIO_FIELDS = tuple(f"{side}_expansion_ratio" for side in SIDES)
MAX_RATIO = 2
MAX_AREA = 3  # times the original image's area
# Ratios are decimals sent as binary floats: (1 + 1) x (1 + 0.5) may come out a hair above 3.
_AREA_TOLERANCE = 1e-9

# The type has no model_name; a task records the type's name in its place, so usage per model counts
# expansions apart from the rest rather than as "unknown".
NO_MODEL = "expand"

Ratio = Annotated[float, Strict(), between(0, MAX_RATIO), documented(minimum=0, maximum=MAX_RATIO)]


def area(up: float, down: float, left: float, right: float) -> float:
    """The expanded image's area as a multiple of the original's."""
    return (1 + up + down) * (1 + left + right)


def _area_rule(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    """Only once all four ratios are valid: a missing or wrong one is already reported."""
    if not all(name in valid for name in RATIO_FIELDS):
        return []
    times = area(*(valid[name] for name in RATIO_FIELDS))
    if times <= MAX_AREA + _AREA_TOLERANCE:
        return []
    message = (
        f"the expanded image would be {times:.4g} times the original's area, (1 + up + down) x "
        f"(1 + left + right); Kling allows at most {MAX_AREA}"
    )
    return [FieldProblem("", "area", message)]


RULES = BodyRules(
    field_types={
        "image": Image,
        **dict.fromkeys(RATIO_FIELDS, Ratio),
        "prompt": Prompt,
        "n": Count,
        **COMMON_FIELDS,
    },
    required=("image", *RATIO_FIELDS),
    default_model=NO_MODEL,
    description=(
        "Kling's image expansion create body: image an http(s) URL or raw Base64 up to 10 MB; each of "
        f"up/down_expansion_ratio (of the height) and left/right_expansion_ratio (of the width) from 0 to "
        f"{MAX_RATIO}, the new image at most {MAX_AREA} times the original's area, (1 + up + down) x "
        f"(1 + left + right); n from 1 to {MAX_IMAGES} images (1 when absent)."
    ),
    cross_field=(_area_rule,),
)
