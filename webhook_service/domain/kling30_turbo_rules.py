"""The create bodies of Kling 3.0 Turbo in the unified API (``POST /text-to-video/kling-3.0-turbo``, ``POST
/image-to-video/kling-3.0-turbo``): kling-3.0's shape (domain/unified_rules.py), each path as its own page
of Kling's reference documents it (docs/kling-endpoints.md, their rows, names the sources and where they
disagree).

* Text to video: ``prompt`` is required, 1 to 3072 characters, with kling-3.0's multi-shot syntax (1 to 6
  shots adding up to the duration); ``settings.aspect_ratio`` 16:9/9:16/1:1.
* Image to video: ``contents`` is required: one ``first_frame {url}`` (a URL or raw Base64 of at most
  50 MB) and at most one ``prompt {text}`` of at most 2500 characters (that page's cap, sent as the text
  it is: the page gives no shot syntax); no last frame, no element, no ``settings.aspect_ratio`` (the
  frame decides it).
* ``settings``: ``resolution`` 720p/1080p (no 4k), ``duration`` an integer from 3 to 15 (the unified
  type's own range). Neither page documents ``audio`` or ``multi_shot``: both are refused
  (``not_supported``), whatever their value. Kling's capability map gives 3.0 Turbo native audio, so its
  videos have sound the body does not ask for; an ``audio: off`` Kling would ignore or refuse is refused
  here, before a video is paid for.
* ``options`` as every unified body.
"""

from __future__ import annotations

from typing import Any

from webhook_service.domain.body_limits import BodyLimit
from webhook_service.domain.body_rules import BodyRules
from webhook_service.domain.kling25_rules import frame_problems
from webhook_service.domain.kling26_rules import resolution_problems
from webhook_service.domain.problems import FieldProblem
from webhook_service.domain.unified_rules import (
    MAX_FRAME_BYTES,
    Contents,
    Options,
    Settings,
    Text,
    no_aspect_ratio,
    shot_problems,
    unified_settings,
)

MODEL = "kling-3.0-turbo"
NAME = "Kling 3.0 Turbo"
TEXT_TO_VIDEO_PATH = "/text-to-video/kling-3.0-turbo"
IMAGE_TO_VIDEO_PATH = "/image-to-video/kling-3.0-turbo"
CONTENT_TYPES = ("prompt", "first_frame")
UNDOCUMENTED = ("audio", "multi_shot")  # kling-3.0's settings that 3.0 Turbo's pages leave out
# The largest bodies (domain/body_limits.py): the first frame is their only large field.
TEXT_TO_VIDEO_BODY = BodyLimit(0, MAX_FRAME_BYTES, "a kling-3.0-turbo text-to-video", "")
IMAGE_TO_VIDEO_BODY = BodyLimit(1, MAX_FRAME_BYTES, "a kling-3.0-turbo image-to-video", "first_frame")


def _settings_problems(settings: dict[str, Any]) -> list[FieldProblem]:
    problems = resolution_problems(settings, NAME)
    for key in UNDOCUMENTED:
        if key in settings:
            message = f"Kling's {MODEL} page documents no such setting"
            problems.append(FieldProblem(f"settings.{key}", "not_supported", message))
    return problems


def _text_to_video(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    settings = unified_settings(valid)
    prompt = valid.get("prompt")
    problems = _settings_problems(settings)
    if isinstance(prompt, str):
        problems += shot_problems("prompt", prompt, settings)
    return problems


def _image_to_video(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    problems, _ = frame_problems(body, CONTENT_TYPES, NAME)
    return problems + _settings_problems(unified_settings(valid)) + no_aspect_ratio(valid)


TEXT_TO_VIDEO = BodyRules(
    field_types={"prompt": Text, "settings": Settings, "options": Options},
    required=("prompt",),
    default_model=MODEL,
    description=(
        "Kling's unified text-to-video create body for Kling 3.0 Turbo: prompt up to 3072 characters (a "
        "prompt written as shots, 'shot n, m, words;', has 1 to 6 shots numbered from 1, each >= 1 s, "
        "adding up to settings.duration); settings.duration 3 to 15, resolution 720p or 1080p, "
        "aspect_ratio; no audio, no multi_shot (its page documents neither)."
    ),
    cross_field=(_text_to_video,),
)
IMAGE_TO_VIDEO = BodyRules(
    field_types={"contents": Contents, "settings": Settings, "options": Options},
    required=("contents",),
    default_model=MODEL,
    description=(
        "Kling's unified image-to-video create body for Kling 3.0 Turbo. contents: one first_frame {url} "
        "and at most one prompt {text} of at most 2500 characters, no last_frame, no element; "
        "settings.duration 3 to 15, resolution 720p or 1080p; no aspect_ratio (the first frame decides "
        "it), no audio, no multi_shot (its page documents neither)."
    ),
    cross_field=(_image_to_video,),
)
