"""The create body of Kling's multi-image to image API (``POST /v1/images/multi-image2image``): one to four
subjects, an optional scene and style, and a prompt, blended into ``n`` images (docs/kling-endpoints.md
names the sources and where they disagree). domain/body_rules.py applies them, through
domain/task_types.py; the count and aspect ratios are image generation's (domain/image_rules.py).

* ``subject_image_list`` is required: 1 to 4 objects ``{"subject_image": <URL or Base64>}``, Kling's
  key:value form. One gateway export shows bare strings; Kling's reference and the others show
  objects, so a bare string is refused with a message that shows the form.
* ``scene_image`` and ``style_image`` are single images; every image is checked as images are
  everywhere (URL or raw Base64 of at most 10 MB; pixels and aspect left to Kling). Kling does not
  crop the subjects: that is the caller's work, and not checkable here.
* ``prompt`` is optional (at most 2500 characters). ``negative_prompt`` appears in one gateway export
  only and is said to be unsupported elsewhere: refused as unknown, it passes with KLING_EXTRA_FIELDS.
* ``n`` (1 to 9) may be absent: Kling makes one image then; each holds a slot of the image pack.
"""

from webhook_service.domain.body_rules import BodyRules
from webhook_service.domain.field_types import COMMON_FIELDS, Image, Prompt, enum, image_objects
from webhook_service.domain.image_rules import ASPECT_RATIOS, MAX_IMAGES, Count

MODEL_NAMES = ("kling-v2", "kling-v2-1")
DEFAULT_MODEL = "kling-v2"
MAX_SUBJECTS = 4


_Subjects = image_objects("subject_image_list", "subject_image", MAX_SUBJECTS)

RULES = BodyRules(
    field_types={
        "model_name": enum(*MODEL_NAMES),
        "prompt": Prompt,
        "subject_image_list": _Subjects,
        "scene_image": Image,
        "style_image": Image,
        "n": Count,
        "aspect_ratio": enum(*ASPECT_RATIOS),
        **COMMON_FIELDS,
    },
    required=("subject_image_list",),
    default_model=DEFAULT_MODEL,
    description=(
        f"Kling's multi-image to image create body: 1 to {MAX_SUBJECTS} subjects as "
        '[{"subject_image": <image>}], an optional scene_image and style_image, each image an http(s) URL '
        f"or raw Base64 up to 10 MB; n from 1 to {MAX_IMAGES} images (1 when absent)."
    ),
)
