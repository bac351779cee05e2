"""The create bodies of Kling's unified motion control (``POST /motion-control/kling-3.0``, ``POST
/motion-control/kling-2.6``): a character, from an image, moving as the person in a video moves
(docs/kling-endpoints.md, the motion-control row, names the source). The items' and settings' shapes
are the unified API's (domain/unified_rules.py); what motion control takes of them is here.

* ``contents`` is required: one ``image {url}`` (the character: a URL or raw Base64 of at most 50 MB, as
  every unified image), one ``video {url}`` (the motion: an http(s) URL, Kling takes no Base64 video),
  at most one ``prompt {text}`` of at most 2500 characters; kling-3.0 also at most one ``element
  {element_id, id}``. The video's format, size (.mp4/.mov, at most 100 MB), pixels (340 to 3850 a side)
  and length (3 to 30 s, or 3 to 10 s when the character faces as in the image) are left to Kling: the
  service never fetches the video, so it cannot read them.
* ``settings`` with ``character_orientation`` (``image``: the character faces as in the image; ``video``:
  as in the motion video) is required. Kling's page marks ``settings`` optional yet the key inside it
  required, so a body without ``settings`` is refused at ``settings.character_orientation``, where the
  missing value is. ``audio`` original (the motion video's sound) or off, ``resolution`` 720p/1080p.
  No ``duration`` (the video is as long as the motion video), ``multi_shot`` or ``aspect_ratio`` (the
  image decides it): refused (``not_supported``).
* ``options`` as every unified body. One video, a slot of the video pack.
"""

from __future__ import annotations

from typing import Any

from webhook_service.domain.body_limits import BodyLimit
from webhook_service.domain.body_rules import BodyRules, CrossFieldRule
from webhook_service.domain.problems import FieldProblem
from webhook_service.domain.unified_rules import (
    MAX_FRAME_BYTES,
    ItemKeys,
    needs_one,
    no_4k,
    settings_narrowed,
    settings_refused,
    too_many,
    unified_body,
    walk_items,
)

KLING_3_0_PATH, KLING_2_6_PATH = "/motion-control/kling-3.0", "/motion-control/kling-2.6"
PROMPT_MAX_CHARS = 2500
ITEM_KEYS: ItemKeys = {"prompt": (("text",), ()), "image": (("url",), ()), "video": (("url",), ())}
ITEM_KEYS_3_0: ItemKeys = {**ITEM_KEYS, "element": (("element_id", "id"), ())}
# Its largest body (domain/body_limits.py): one image, the character; the video is a URL.
BODY = BodyLimit(1, MAX_FRAME_BYTES, "a motion control", "image")
_REFUSED = {
    "duration": "not taken by motion control: the video is as long as the motion video",
    "multi_shot": "not taken by motion control: the video follows the motion video's one shot",
    "aspect_ratio": "not taken by motion control: the character's image decides the aspect ratio",
}
_NARROWED = {
    "audio": (("original", "off"), "motion control keeps the motion video's sound (original) or makes none"),
    **no_4k("motion control"),
}


def _motion(item_keys: ItemKeys, model: str) -> CrossFieldRule:
    def check(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
        problems = settings_refused(valid, _REFUSED) + settings_narrowed(valid, _NARROWED)
        settings = body.get("settings", {})
        if isinstance(settings, dict) and "character_orientation" not in settings:  # else its type's
            message = "is required (image or video: which way the character faces), in settings"
            problems.append(FieldProblem("settings.character_orientation", "missing", message))
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            return problems  # its type's problem is reported already
        what = f"motion control ({model})"
        found, seen = walk_items(contents, item_keys, what, prompt_max=PROMPT_MAX_CHARS)
        problems += found + too_many(seen, dict.fromkeys(item_keys, 1))
        return (
            problems
            + needs_one(seen, "image", " (the character)")
            + needs_one(seen, "video", " (the motion)")
        )

    return check


def _rules(item_keys: ItemKeys, model: str, description: str) -> BodyRules:
    return unified_body(
        model,
        f"Kling's unified motion-control create body ({model}). contents: one image {{url}} (the "
        f"character), one video {{url}} (the motion, a URL), at most one prompt {{text}} (up to 2500 "
        f"characters){description}; settings.character_orientation image or video required, audio "
        "original or off, resolution 720p or 1080p, no duration (the motion video's own).",
        _motion(item_keys, model),
        orientation=True,
    )


KLING_3_0 = _rules(ITEM_KEYS_3_0, "kling-3.0", ", at most one element {element_id, id}")
KLING_2_6 = _rules(ITEM_KEYS, "kling-2.6", "")
