"""The create body of Kling's unified omni-video API (``POST /omni-video/kling-3.0-omni``): a video from
a prompt, images, elements and at most one video, or an edit of a video (docs/kling-endpoints.md, "The
unified API", names the source). The field types and the shot rules are the unified API's
(domain/unified_rules.py); the rules across items are here.

* ``contents`` is required: ``prompt`` {text}, ``first_frame``, ``last_frame`` and ``refer_image`` {url,
  optional id} (a URL or raw Base64 of at most 50 MB), ``feature_video`` (a video to take features from)
  and ``base_video`` (a video to edit) {url, optional id}: a URL only, Kling takes no Base64 video;
  ``element`` {element_id, id}. Each item its own keys only; the ``id`` s, which the prompt names, are
  distinct; an item of another path (``voice``, ``image``, ``video``) is refused. At most one prompt (as
  for image to video), one first frame, one last frame and only with a first frame (a last frame alone
  is not supported), one reference video of either kind. Kling O1 shares these rules
  (`contents_problems`; domain/o1_rules.py adds its own).
* Counts: Kling's limits depend on whether each element is made from a video or from images, which only
  Kling's element library knows; what holds for every mix is checked: reference images and elements
  together at most 7, at most 4 with a reference video, and at most 3 elements with a first frame.
* With a ``base_video``: no first or last frame, ``settings.multi_shot`` not true, ``settings.audio``
  not native. With a ``feature_video``: ``multi_shot`` not false, ``audio`` off only.
* ``settings.aspect_ratio``: Kling's table says it is required without a first frame or a reference
  video, while its own prompt-only example leaves it out and the table gives it a default (16:9): it
  stays optional here. The files' pixels, lengths and frame rates are left to Kling, which reads them.
"""

from __future__ import annotations

from typing import Any

from webhook_service.domain.body_limits import BodyLimit
from webhook_service.domain.problems import FieldProblem
from webhook_service.domain.unified_rules import (
    MAX_FRAME_BYTES,
    PROMPT_MAX_CHARS,
    ItemKeys,
    shot_problems,
    too_many,
    unified_body,
    unified_settings,
    walk_items,
)

MODEL = "kling-3.0-omni"
OMNI_VIDEO_PATH = "/omni-video/kling-3.0-omni"
IMAGES = ("first_frame", "last_frame", "refer_image")
VIDEOS = ("feature_video", "base_video")
ITEM_KEYS: ItemKeys = {
    "prompt": (("text",), ()),
    **dict.fromkeys(IMAGES + VIDEOS, (("url",), ("id",))),
    "element": (("element_id", "id"), ()),
}
MAX_REFERENCES = 7  # reference images and elements together, without a reference video
MAX_REFERENCES_WITH_VIDEO = 4
MAX_ELEMENTS_WITH_FRAME = 3
# Its largest body (domain/body_limits.py): a first and a last frame beside 7 reference images (no
# element, so all 7 may be images), each of 50 MB; a video is a URL.
BODY = BodyLimit(
    2 + MAX_REFERENCES, MAX_FRAME_BYTES, "a kling-3.0-omni video", "first_frame, last_frame, 7 refer_image"
)


def _counts(seen: dict[str, list[int]]) -> list[FieldProblem]:
    problems = too_many(seen, {"prompt": 1, "first_frame": 1, "last_frame": 1})
    for n in sorted(seen["feature_video"] + seen["base_video"])[1:]:
        message = "at most 1 reference video (feature_video or base_video)"
        problems.append(FieldProblem(f"contents[{n}]", "too_many", message))
    if seen["last_frame"] and not seen["first_frame"]:
        message = "a last_frame needs a first_frame: a last frame alone is not supported"
        problems.append(FieldProblem("contents", "requires", message))
    video = bool(seen["feature_video"] or seen["base_video"])
    most = MAX_REFERENCES_WITH_VIDEO if video else MAX_REFERENCES
    if (count := len(seen["refer_image"]) + len(seen["element"])) > most:
        message = f"has {count} reference images and elements; at most {most}" + (
            " with a reference video" if video else ""
        )
        problems.append(FieldProblem("contents", "too_many", message))
    if seen["first_frame"] and len(seen["element"]) > MAX_ELEMENTS_WITH_FRAME:
        message = f"has {len(seen['element'])} elements; at most {MAX_ELEMENTS_WITH_FRAME} with a first frame"
        problems.append(FieldProblem("contents", "too_many", message))
    return problems


def _with_video(seen: dict[str, list[int]], settings: dict[str, Any]) -> list[FieldProblem]:
    """What a reference video rules out, by its kind."""
    problems = []
    if seen["base_video"]:
        for n in seen["first_frame"] + seen["last_frame"]:
            message = "not with a base_video (the video to edit sets its own frames)"
            problems.append(FieldProblem(f"contents[{n}]", "not_supported", message))
        if settings.get("multi_shot") is True:
            message = "cannot be true with a base_video: an edited video is one shot"
            problems.append(FieldProblem("settings.multi_shot", "not_supported", message))
    if seen["feature_video"] and settings.get("multi_shot") is False:
        message = "cannot be false with a feature_video"
        problems.append(FieldProblem("settings.multi_shot", "not_supported", message))
    audio = settings.get("audio")
    if seen["feature_video"] and audio not in (None, "off"):  # also refuses what a base_video would
        message = "can only be off with a feature_video"
        problems.append(FieldProblem("settings.audio", "not_supported", message))
    elif seen["base_video"] and audio == "native":
        message = "cannot be native with a base_video (original or off)"
        problems.append(FieldProblem("settings.audio", "not_supported", message))
    return problems


def contents_problems(
    contents: list[Any], settings: dict[str, Any], what: str, prompt_max: int
) -> tuple[list[FieldProblem], dict[str, list[int]]]:
    """The rules on `contents` every omni model shares (kling-3.0-omni's, Kling O1's: domain/o1_rules.py),
    and where each kind of item is; `what` names the model in a refusal, `prompt_max` its longest prompt.
    `settings` are those the model's own rules passed: a value it refuses anyway is not refused twice."""
    problems, seen = walk_items(contents, ITEM_KEYS, what, prompt_max=prompt_max)
    return problems + _counts(seen) + _with_video(seen, settings), seen


def _omni(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return []  # its type's problem is reported already
    settings = unified_settings(valid)
    problems, seen = contents_problems(contents, settings, "kling-3.0-omni", PROMPT_MAX_CHARS)
    for n in seen["prompt"]:
        if isinstance(text := contents[n].get("text"), str):
            problems += shot_problems(f"contents[{n}].text", text, unified_settings(body))
    return problems


RULES = unified_body(
    MODEL,
    "Kling's unified omni-video create body (kling-3.0-omni). contents: at most one prompt, one "
    "first_frame, one last_frame (with a first frame), one reference video (feature_video or "
    "base_video, a URL); reference images and elements at most 7 (4 with a video); ids distinct.",
    _omni,
)
