"""The create body of Kling's virtual try-on API (``POST /v1/images/kolors-virtual-try-on``): a photo of a
person and one of a garment, and the model that dresses the one in the other (docs/kling-endpoints.md
names the sources and where they disagree). domain/body_rules.py applies them, through
domain/task_types.py.

* ``human_image`` and ``cloth_image`` are both required: Kling's reference marks the person's photo
  required and every gateway copy marks both so; a try-on without a garment has nothing to try on,
  and Kling would fail it later rather than now.
* Both are images as everywhere (an http(s) URL or raw Base64 of at most 10 MB); their pixel size
  (at least 300 px a side) and file type are left to Kling, which reads them anyway.
* Which garments combine (kolors-virtual-try-on-v1-5 takes a top and a bottom in one picture, never
  two tops) is in the pixels: left to Kling.
* The body has no prompt, no ``n`` (one image comes back) and, in Kling's reference, no
  ``watermark_info``: those are refused as unknown, as any other undocumented field is, and pass
  with KLING_EXTRA_FIELDS should Kling add them.
"""

from webhook_service.domain.body_rules import BodyRules
from webhook_service.domain.field_types import COMMON_FIELDS, Image, enum

MODEL_NAMES = ("kolors-virtual-try-on-v1", "kolors-virtual-try-on-v1-5")
DEFAULT_MODEL = "kolors-virtual-try-on-v1"

RULES = BodyRules(
    field_types={
        "model_name": enum(*MODEL_NAMES),
        "human_image": Image,
        "cloth_image": Image,
        "callback_url": COMMON_FIELDS["callback_url"],
        "external_task_id": COMMON_FIELDS["external_task_id"],
    },
    required=("human_image", "cloth_image"),
    default_model=DEFAULT_MODEL,
    description=(
        "Kling's virtual try-on create body: a person (human_image) and a garment (cloth_image), each an "
        "http(s) URL or raw Base64 up to 10 MB; kolors-virtual-try-on-v1-5 also takes a top and a bottom "
        "combined in one image. One image comes back."
    ),
)
