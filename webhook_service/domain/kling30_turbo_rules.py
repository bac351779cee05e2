"""The create bodies of Kling 3.0 Turbo in the unified API (``POST /text-to-video/kling-3.0-turbo``, ``POST
/image-to-video/kling-3.0-turbo``): kling-3.0's shape (domain/unified_rules.py), each path as its own page
of Kling's reference documents it (docs/kling-endpoints.md, their rows, names the sources and where they
disagree).

* Text to video: ``prompt`` is required, 1 to 3072 characters, with kling-3.0's multi-shot syntax (1 to 6
  shots adding up to the duration); ``settings.aspect_ratio`` 16:9/9:16/1:1.
* Image to video: ``contents`` is required: one ``first_frame {url}`` (a URL or raw Base64 of at most
  50 MB) and at most one ``prompt {text}`` of at most 2500 characters (that page's cap, sent as the text
  it is: the page gives no shot syntax); no last frame, no element nor any other path's item (omni's,
  2.6's voices, motion control's image and video), no ``settings.aspect_ratio`` (the frame decides it).
* ``settings``: ``resolution`` 720p/1080p (no 4k), ``duration`` an integer from 3 to 15 (the unified
  type's own range). Neither page documents ``audio`` or ``multi_shot``: both are refused
  (``not_supported``), whatever their value. Kling's capability map gives 3.0 Turbo native audio, so its
  videos have sound the body does not ask for; an ``audio: off`` Kling would ignore or refuse is refused
  here, before a video is paid for. Motion control's ``character_orientation`` is refused as on every
  path but its own.
* ``options`` as every unified body.
"""

from __future__ import annotations

from typing import Any

from webhook_service.domain.body_limits import BodyLimit
from webhook_service.domain.problems import FieldProblem
from webhook_service.domain.unified_rules import (
    FRAME_DECIDES_ASPECT,
    MAX_FRAME_BYTES,
    ItemKeys,
    Text,
    needs_one,
    no_4k,
    settings_narrowed,
    settings_refused,
    shot_problems,
    too_many,
    unified_body,
    unified_settings,
    walk_items,
)

MODEL = "kling-3.0-turbo"
NAME = "Kling 3.0 Turbo"
TEXT_TO_VIDEO_PATH = "/text-to-video/kling-3.0-turbo"
IMAGE_TO_VIDEO_PATH = "/image-to-video/kling-3.0-turbo"
IMAGE_PROMPT_MAX_CHARS = 2500  # the image-to-video page's (its text-to-video page's is kling-3.0's 3072)
ITEM_KEYS: ItemKeys = {"prompt": (("text",), ()), "first_frame": (("url",), ())}
UNDOCUMENTED = ("audio", "multi_shot")  # kling-3.0's settings that 3.0 Turbo's pages leave out
# The largest bodies (domain/body_limits.py): the first frame is their only large field.
TEXT_TO_VIDEO_BODY = BodyLimit(0, MAX_FRAME_BYTES, "a kling-3.0-turbo text-to-video", "")
IMAGE_TO_VIDEO_BODY = BodyLimit(1, MAX_FRAME_BYTES, "a kling-3.0-turbo image-to-video", "first_frame")


def _settings(valid: dict[str, Any]) -> list[FieldProblem]:
    undocumented = dict.fromkeys(UNDOCUMENTED, f"Kling's {MODEL} page documents no such setting")
    return settings_narrowed(valid, no_4k(NAME)) + settings_refused(valid, undocumented)


def _text_to_video(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    prompt = valid.get("prompt")
    problems = _settings(valid)
    if isinstance(prompt, str):
        # multi_shot is refused here: a `false` turns no shot rule off.
        settings = {key: value for key, value in unified_settings(body).items() if key != "multi_shot"}
        problems += shot_problems("prompt", prompt, settings)
    return problems


def _image_to_video(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    problems = _settings(valid) + settings_refused(valid, FRAME_DECIDES_ASPECT)
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return problems  # its type's problem is reported already
    what = f"{NAME}'s image to video"
    found, seen = walk_items(contents, ITEM_KEYS, what, prompt_max=IMAGE_PROMPT_MAX_CHARS)
    return problems + found + needs_one(seen, "first_frame") + too_many(seen, dict.fromkeys(ITEM_KEYS, 1))


TEXT_TO_VIDEO = unified_body(
    MODEL,
    "Kling's unified text-to-video create body for Kling 3.0 Turbo: prompt up to 3072 characters (a "
    "prompt written as shots, 'shot n, m, words;', has 1 to 6 shots numbered from 1, each >= 1 s, "
    "adding up to settings.duration); settings.duration 3 to 15, resolution 720p or 1080p, "
    "aspect_ratio; no audio, no multi_shot (its page documents neither).",
    _text_to_video,
    prompt=Text,
)
IMAGE_TO_VIDEO = unified_body(
    MODEL,
    "Kling's unified image-to-video create body for Kling 3.0 Turbo. contents: one first_frame {url} "
    "and at most one prompt {text} of at most 2500 characters, no last_frame, no element; "
    "settings.duration 3 to 15, resolution 720p or 1080p; no aspect_ratio (the first frame decides "
    "it), no audio, no multi_shot (its page documents neither).",
    _image_to_video,
)
