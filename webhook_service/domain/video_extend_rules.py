"""The create body of Kling's video extension API (``POST /v1/videos/video-extend``): a video Kling made,
continued by about 4 to 5 seconds (docs/kling-endpoints.md names the sources and where they disagree).
domain/body_rules.py applies these rules, through domain/task_types.py; the rules that need to know the
video itself are domain/video_extend.py's, checked when the task is recorded.

* ``video_id`` is required: the id of a video in a Kling result (``task_result.videos[].id``), not a
  task id. Kling documents no length; ids are UUIDs, and 1 to 128 characters without whitespace bound
  what the service keys its index by.
* ``prompt`` and ``negative_prompt`` are optional, at most 2500 characters each (one gateway marks the
  prompt required; Kling's reference and the others do not).
* ``cfg_scale`` is in [0, 1], for every source video: the extension has no model of its own.
* No ``model_name``, ``mode`` or ``duration``: Kling extends with the source video's model and mode, by
  4 to 5 seconds. Sent anyway, they are refused as unknown, as any undocumented field is (and pass with
  KLING_EXTRA_FIELDS, as one gateway's ``task_id`` beside ``video_id`` would).
"""

from typing import Annotated

from pydantic import StringConstraints

from webhook_service.domain.body_rules import BodyRules
from webhook_service.domain.field_types import COMMON_FIELDS, CfgScale, Prompt

NAME = "video-extend"
# Kling's extension runs with the source video's model; until the source is known, usage says this.
DEFAULT_MODEL = "kling-v1"
VIDEO_ID_MAX_CHARS = 128

VideoId = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=VIDEO_ID_MAX_CHARS, pattern=r"^[!-}]+$")
]

RULES = BodyRules(
    field_types={
        "video_id": VideoId,
        "prompt": Prompt,
        "negative_prompt": Prompt,
        "cfg_scale": CfgScale,
        **COMMON_FIELDS,
    },
    required=("video_id",),
    default_model=DEFAULT_MODEL,
    description=(
        "Kling's video extension create body: video_id names a video of one of your own tasks (text2video, "
        "image2video or an earlier extension), which Kling continues by 4 to 5 seconds with its model and "
        "mode; the whole may not pass 3 minutes, and Kling keeps videos for 30 days."
    ),
)
