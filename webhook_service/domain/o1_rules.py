"""The create body of Kling O1's unified omni-video (``POST /omni-video/kling-o1``): kling-3.0-omni's
``contents`` (domain/omni_rules.py: its item kinds, keys, counts and reference-video rules, shared, not
copied) with O1's limits from its page (docs/kling-endpoints.md, the kling-o1 row, names the source).

* ``contents``: a ``prompt`` of at most 2500 characters, read as one text (O1 takes no ``multi_shot``,
  so no shot rule applies); no ``element`` beside both a first and a last frame. Elements made from
  images only, a reference video of 3 to 10 s and at most 2160 px: Kling's element library and the
  video's file know that, the service reads neither, so Kling judges them.
* ``settings``: ``audio`` original/off (O1 makes no native audio), ``resolution`` 720p/1080p (no 4k),
  ``duration`` 3 to 10, and 5 or 10 when a first frame is the only image, video or element given (the
  page's rule for a video from a first frame alone); ``aspect_ratio`` is required without a first frame
  or a reference video (nothing else decides the shape; the page says so, unlike kling-3.0-omni's, whose
  own example leaves it out). kling-3.0's ``multi_shot`` is refused. A refused setting is refused once:
  omni's reference-video rules judge only the settings O1's own rules passed.
* Durations: the page allows 3 to 10 s for a video from the prompt alone, Kling's capability map "only
  5s or 10s": the create body follows the page that documents it (3 to 10), Kling refusing what it
  does not make; the row records the disagreement.
* ``options`` as every unified body.
"""

from __future__ import annotations

from typing import Any

from webhook_service.domain.body_limits import BodyLimit
from webhook_service.domain.omni_rules import MAX_REFERENCES, VIDEOS, contents_problems
from webhook_service.domain.problems import FieldProblem
from webhook_service.domain.unified_rules import (
    ALL_CONTENT_TYPES,
    MAX_FRAME_BYTES,
    no_4k,
    settings_narrowed,
    settings_refused,
    unified_body,
    unified_settings,
)

MODEL = "kling-o1"
OMNI_VIDEO_PATH = "/omni-video/kling-o1"
PROMPT_MAX_CHARS = 2500
DURATIONS = tuple(range(3, 11))
FIRST_FRAME_DURATIONS = (5, 10)
# Its largest body (domain/body_limits.py): as kling-3.0-omni's, two frames and 7 reference images.
BODY = BodyLimit(
    2 + MAX_REFERENCES, MAX_FRAME_BYTES, "a kling-o1 video", "first_frame, last_frame, 7 refer_image"
)
_MEDIA = ("last_frame", "refer_image", "element", *VIDEOS)  # what else makes a first frame not alone


def _settings(valid: dict[str, Any]) -> list[FieldProblem]:
    problems = settings_refused(
        valid, {"multi_shot": "is kling-3.0's: Kling O1 takes no multi-shot setting (one text, one video)"}
    )
    return problems + settings_narrowed(
        valid,
        {
            "audio": (
                ("original", "off"),
                "Kling O1 keeps a reference video's sound (original) or makes none",
            ),
            **no_4k("Kling O1"),
            "duration": (DURATIONS, "Kling O1 makes videos of 3 to 10 s"),
        },
    )


def _o1(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    problems = _settings(valid)
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return problems  # its type's problem is reported already
    settings = unified_settings(valid)
    refused = {problem.field.removeprefix("settings.") for problem in problems}
    passed = {key: value for key, value in settings.items() if key not in refused}  # refused once only
    found, seen = contents_problems(contents, passed, "Kling O1", PROMPT_MAX_CHARS)
    problems += found
    if seen["first_frame"] and seen["last_frame"]:
        for n in seen["element"]:
            message = "not with both a first and a last frame: Kling O1 takes elements with one frame or none"
            problems.append(FieldProblem(f"contents[{n}]", "not_supported", message))
    if not all(isinstance(item, dict) and item.get("type") in ALL_CONTENT_TYPES for item in contents):
        return problems  # an item of no known kind (its type's problem) may be what gives shape or company
    given = body.get("settings", {})  # as sent: a bad aspect_ratio is its type's problem, not a missing one
    shaped = seen["first_frame"] or seen["feature_video"] or seen["base_video"]
    if not shaped and isinstance(given, dict) and "aspect_ratio" not in given:
        message = "is required when no first_frame or reference video is given: nothing else gives its shape"
        problems.append(FieldProblem("settings.aspect_ratio", "missing", message))
    alone = seen["first_frame"] and not any(seen[kind] for kind in _MEDIA)
    if alone and settings.get("duration") in set(DURATIONS) - set(FIRST_FRAME_DURATIONS):
        message = "must be 5 or 10 for a video from a first frame alone (3 to 10 with other references)"
        problems.append(FieldProblem("settings.duration", "not_supported", message))
    return problems


RULES = unified_body(
    MODEL,
    "Kling's unified omni-video create body for Kling O1. contents as kling-3.0-omni's (prompt up to "
    "2500 characters, no element beside a first and a last frame); settings.audio original or off, "
    "resolution 720p or 1080p, duration 3 to 10 (5 or 10 with a first frame alone), aspect_ratio "
    "required without a first frame or a reference video, no multi_shot.",
    _o1,
)
