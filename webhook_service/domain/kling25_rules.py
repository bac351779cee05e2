"""The create bodies of Kling 2.5 Turbo in the unified API (``POST /text-to-video/kling-2.5-turbo``, ``POST
/image-to-video/kling-2.5-turbo``): kling-3.0's shape (domain/unified_rules.py) with 2.5 Turbo's limits,
which are Kling 2.6's without its audio (docs/kling-endpoints.md, their rows, names the sources).

* Text to video: ``prompt`` is required, 1 to 2500 characters, one shot (a prompt written as shots is
  sent as the text it is, as 2.6's); ``settings.aspect_ratio`` 16:9/9:16/1:1.
* Image to video: ``contents`` is required: one ``first_frame {url}`` (a URL or raw Base64 of at most
  50 MB, as kling-3.0's), at most one ``last_frame {url}``, and with it ``settings.resolution`` 1080p
  (Kling makes a video between two frames at 1080p only; 720p is the default), at most one ``prompt
  {text}`` of at most 2500 characters. kling-3.0's elements are refused, and ``settings.aspect_ratio``
  (the first frame decides it).
* ``settings``: ``resolution`` 720p/1080p, ``duration`` 5 or 10, an integer. 2.5 Turbo makes silent
  video: ``audio`` is refused whatever its value, as are ``multi_shot`` and 4k (``not_supported``: its
  pages document none of them), rather than left for Kling to refuse or ignore.
* ``options`` as every unified body.

`frame_problems` checks the ``contents`` of an image-to-video body that takes frames and one prompt of
at most 2500 characters, nothing else: 2.5 Turbo's, and 3.0 Turbo's without a last frame
(domain/kling30_turbo_rules.py).
"""

from __future__ import annotations

from typing import Any

from webhook_service.domain.body_limits import BodyLimit
from webhook_service.domain.body_rules import BodyRules
from webhook_service.domain.kling26_rules import (
    DEFAULT_RESOLUTION,
    PROMPT_MAX_CHARS,
    Prompt,
    duration_problems,
    one_shot_problems,
    resolution_problems,
)
from webhook_service.domain.problems import FieldProblem
from webhook_service.domain.unified_rules import (
    ALL_CONTENT_TYPES,
    MAX_FRAME_BYTES,
    Contents,
    Options,
    Settings,
    item_problems,
    no_aspect_ratio,
    unified_settings,
)
from webhook_service.domain.unified_rules import PROMPT_MAX_CHARS as ITEM_TEXT_MAX_CHARS

MODEL = "kling-2.5-turbo"
NAME = "Kling 2.5 Turbo"
TEXT_TO_VIDEO_PATH = "/text-to-video/kling-2.5-turbo"
IMAGE_TO_VIDEO_PATH = "/image-to-video/kling-2.5-turbo"
CONTENT_TYPES = ("prompt", "first_frame", "last_frame")
# The keys each of those items takes besides `type`: (required, optional), as kling-3.0's.
FRAME_ITEM_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "prompt": (("text",), ()),
    "first_frame": (("url",), ()),
    "last_frame": (("url",), ()),
}
# The largest bodies (domain/body_limits.py): frames are their only large fields.
TEXT_TO_VIDEO_BODY = BodyLimit(0, MAX_FRAME_BYTES, "a kling-2.5-turbo text-to-video", "")
IMAGE_TO_VIDEO_BODY = BodyLimit(
    2, MAX_FRAME_BYTES, "a kling-2.5-turbo image-to-video", "first_frame, last_frame"
)


def frame_problems(
    body: dict[str, Any], taken: tuple[str, ...], model: str
) -> tuple[list[FieldProblem], dict[str, list[int]]]:
    """The problems of `body`'s ``contents`` of the item types `taken` (of CONTENT_TYPES), and where
    each type is (its items' indexes). Each item its own keys; one of each type at most, a first frame
    required; a prompt of at most 2500 characters (the item's type allows kling-3.0's 3072). The raw
    items, not only those that passed their types: one bad item hides no other problem."""
    seen: dict[str, list[int]] = {kind: [] for kind in taken}
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return [], seen  # its type's problem is reported already
    keys, problems = {kind: FRAME_ITEM_KEYS[kind] for kind in taken}, []
    for n, item in enumerate(contents):
        if not isinstance(item, dict) or item.get("type") not in ALL_CONTENT_TYPES:
            continue
        if item["type"] not in taken:
            message = f"{model}'s image to video takes {', '.join(taken)} only"
            problems.append(FieldProblem(f"contents[{n}].type", "not_supported", message))
            continue
        seen[item["type"]].append(n)
        problems += item_problems(n, item, keys)
        text = item.get("text") if item["type"] == "prompt" else None
        if isinstance(text, str) and PROMPT_MAX_CHARS < len(text) <= ITEM_TEXT_MAX_CHARS:
            message = f"must be at most {PROMPT_MAX_CHARS} characters ({model}'s image to video)"
            problems.append(FieldProblem(f"contents[{n}].text", "too_long", message))
    if not seen["first_frame"]:
        problems.append(FieldProblem("contents", "missing", "needs one item of type first_frame"))
    for kind, indexes in seen.items():
        for n in indexes[1:]:
            problems.append(FieldProblem(f"contents[{n}]", "too_many", f"at most 1 of type {kind}"))
    return problems, seen


def _settings_problems(settings: dict[str, Any]) -> list[FieldProblem]:
    """2.6's values (domain/kling26_rules.py) and no audio at all."""
    problems = one_shot_problems(settings, NAME) + resolution_problems(settings, NAME)
    problems += duration_problems(settings, NAME)
    if "audio" in settings:
        message = f"{NAME} makes silent video: Kling documents no audio setting for it"
        problems.append(FieldProblem("settings.audio", "not_supported", message))
    return problems


def _text_to_video(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    return _settings_problems(unified_settings(valid))


def _image_to_video(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    """The frames, the settings, and a last frame only at 1080p. The resolution is read only from
    settings that passed their types: a wrong key beside "1080p" must not add a wrong problem."""
    settings = unified_settings(valid)
    problems, seen = frame_problems(body, CONTENT_TYPES, NAME)
    problems += _settings_problems(settings) + no_aspect_ratio(valid)
    read = "settings" not in body or "settings" in valid
    if seen["last_frame"] and read and settings.get("resolution", DEFAULT_RESOLUTION) == DEFAULT_RESOLUTION:
        message = f'{NAME} takes a last frame at 1080p only: set settings.resolution to "1080p"'
        problems.append(FieldProblem(f"contents[{seen['last_frame'][0]}]", "requires", message))
    return problems


TEXT_TO_VIDEO = BodyRules(
    field_types={"prompt": Prompt, "settings": Settings, "options": Options},
    required=("prompt",),
    default_model=MODEL,
    description=(
        "Kling's unified text-to-video create body for Kling 2.5 Turbo: prompt up to 2500 characters; "
        "settings.duration 5 or 10, resolution 720p or 1080p, aspect_ratio; no audio (silent video), "
        "no multi_shot."
    ),
    cross_field=(_text_to_video,),
)
IMAGE_TO_VIDEO = BodyRules(
    field_types={"contents": Contents, "settings": Settings, "options": Options},
    required=("contents",),
    default_model=MODEL,
    description=(
        "Kling's unified image-to-video create body for Kling 2.5 Turbo. contents: one first_frame {url}, "
        "at most one last_frame {url} (then settings.resolution 1080p) and one prompt {text} of at most "
        "2500 characters, no element; settings.duration 5 or 10, resolution 720p or 1080p; no "
        "aspect_ratio (the first frame decides it), no audio, no multi_shot."
    ),
    cross_field=(_image_to_video,),
)
