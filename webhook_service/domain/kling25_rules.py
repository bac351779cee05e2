"""The create bodies of Kling 2.5 Turbo in the unified API (``POST /text-to-video/kling-2.5-turbo``, ``POST
/image-to-video/kling-2.5-turbo``): kling-3.0's shape (domain/unified_rules.py) with 2.5 Turbo's limits,
which are Kling 2.6's without its audio (docs/kling-endpoints.md, their rows, names the sources).

* Text to video: ``prompt`` is required, 1 to 2500 characters, one shot (a prompt written as shots is
  sent as the text it is, as 2.6's); ``settings.aspect_ratio`` 16:9/9:16/1:1.
* Image to video: ``contents`` is required: one ``first_frame {url}`` (a URL or raw Base64 of at most
  50 MB, as kling-3.0's), at most one ``last_frame {url}``, and with it ``settings.resolution`` 1080p
  (Kling makes a video between two frames at 1080p only; 720p is the default), at most one ``prompt
  {text}`` of at most 2500 characters. The other paths' items are refused (kling-3.0's elements, omni's
  reference items, 2.6's voices, motion control's image and video), and ``settings.aspect_ratio`` (the
  first frame decides it).
* ``settings``: ``resolution`` 720p/1080p, ``duration`` 5 or 10, an integer. 2.5 Turbo makes silent
  video: ``audio`` is refused whatever its value, as are ``multi_shot``, 4k and motion control's
  ``character_orientation`` (``not_supported``: its pages document none of them), rather than left for
  Kling to refuse or ignore.
* ``options`` as every unified body.
"""

from __future__ import annotations

from typing import Any

from webhook_service.domain.body_limits import BodyLimit
from webhook_service.domain.kling26_rules import PROMPT_MAX_CHARS, Prompt, last_frame_at_1080p, limits
from webhook_service.domain.problems import FieldProblem
from webhook_service.domain.unified_rules import (
    FRAME_DECIDES_ASPECT,
    MAX_FRAME_BYTES,
    ItemKeys,
    needs_one,
    settings_narrowed,
    settings_refused,
    too_many,
    unified_body,
    walk_items,
)

MODEL = "kling-2.5-turbo"
NAME = "Kling 2.5 Turbo"
TEXT_TO_VIDEO_PATH = "/text-to-video/kling-2.5-turbo"
IMAGE_TO_VIDEO_PATH = "/image-to-video/kling-2.5-turbo"
# The items image to video takes, their keys besides `type`: (required, optional), as kling-3.0's.
ITEM_KEYS: ItemKeys = {"prompt": (("text",), ()), "first_frame": (("url",), ()), "last_frame": (("url",), ())}
# The largest bodies (domain/body_limits.py): frames are their only large fields.
TEXT_TO_VIDEO_BODY = BodyLimit(0, MAX_FRAME_BYTES, "a kling-2.5-turbo text-to-video", "")
IMAGE_TO_VIDEO_BODY = BodyLimit(
    2, MAX_FRAME_BYTES, "a kling-2.5-turbo image-to-video", "first_frame, last_frame"
)


def _settings(valid: dict[str, Any]) -> list[FieldProblem]:
    """2.6's limits (domain/kling26_rules.py) and no audio at all."""
    refused, narrowed = limits(NAME)
    silent = f"{NAME} makes silent video: Kling documents no audio setting for it"
    return settings_refused(valid, {**refused, "audio": silent}) + settings_narrowed(valid, narrowed)


def _text_to_video(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    return _settings(valid)


def _image_to_video(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    """The frames and one prompt of at most 2500 characters (the item's type allows kling-3.0's 3072), the
    settings, and a last frame only at 1080p."""
    problems = _settings(valid) + settings_refused(valid, FRAME_DECIDES_ASPECT)
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return problems  # its type's problem is reported already
    found, seen = walk_items(contents, ITEM_KEYS, f"{NAME}'s image to video", prompt_max=PROMPT_MAX_CHARS)
    problems += found + needs_one(seen, "first_frame") + too_many(seen, dict.fromkeys(ITEM_KEYS, 1))
    return problems + last_frame_at_1080p(body, seen, NAME)


TEXT_TO_VIDEO = unified_body(
    MODEL,
    "Kling's unified text-to-video create body for Kling 2.5 Turbo: prompt up to 2500 characters; "
    "settings.duration 5 or 10, resolution 720p or 1080p, aspect_ratio; no audio (silent video), "
    "no multi_shot.",
    _text_to_video,
    prompt=Prompt,
)
IMAGE_TO_VIDEO = unified_body(
    MODEL,
    "Kling's unified image-to-video create body for Kling 2.5 Turbo. contents: one first_frame {url}, "
    "at most one last_frame {url} (then settings.resolution 1080p) and one prompt {text} of at most "
    "2500 characters, no element; settings.duration 5 or 10, resolution 720p or 1080p; no "
    "aspect_ratio (the first frame decides it), no audio, no multi_shot.",
    _image_to_video,
)
