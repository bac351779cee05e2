"""The create bodies of Kling's unified API for Kling 2.6 (``POST /text-to-video/kling-2.6``, ``POST
/image-to-video/kling-2.6``): the kling-3.0 bodies' shape (domain/unified_rules.py: ``prompt`` or
``contents``, ``settings``, ``options``) with 2.6's limits (docs/kling-endpoints.md, "The unified API",
names the sources).

* Text to video: ``prompt`` is required, 1 to 2500 characters (kling-3.0 takes 3072). Kling 2.6 makes
  one shot: a prompt written as shots is sent as the text it is, no shot rule applies.
* Image to video: ``contents`` is required: one ``first_frame {url}``, at most one ``last_frame {url}``
  (only at 1080p), at most one ``prompt {text}`` of at most 2500 characters, at most 2 ``voice
  {voice_id, id}`` (only with ``settings.audio`` native: a voice speaks, a silent video has none). A
  voice id names a voice of Kling's voice library, as /v1 image2video's ``voice_list`` does, and is
  checked as that one is (a non-empty string, at most 2): the library is the account's, not a tenant's.
* ``settings``: ``audio`` native/off, ``resolution`` 720p/1080p (no 4k), ``duration`` 5 or 10, an
  integer; ``aspect_ratio`` 16:9/9:16/1:1 for text to video only (for image to video the first frame
  decides it). kling-3.0's ``multi_shot``, ``4k``, 3 to 15 s and omni's ``original`` audio are refused
  (``not_supported``), rather than left for Kling to refuse or ignore.
* Native audio only at 1080p (Kling: "when generating videos with native audio, only 1080P resolution is
  supported"; its capability map: "720P supports silent videos only"): ``audio`` native needs
  ``resolution`` 1080p, which is not the default (720p); so does a last frame (Kling 2.6's image to
  video page takes one at 1080p only).
* ``options`` as every unified body.

The settings' and items' shapes are the unified API's (their keys and their types, checked and
documented as one `settings` object and one `contents` item); 2.6's narrower values are checked here, so
an unknown key gets the same hint on every unified path.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import StringConstraints

from webhook_service.domain.body_limits import BodyLimit
from webhook_service.domain.body_rules import BodyRules
from webhook_service.domain.field_types import MAX_VOICES
from webhook_service.domain.problems import FieldProblem
from webhook_service.domain.unified_rules import (
    MAX_FRAME_BYTES,
    Contents,
    ItemKeys,
    Options,
    Settings,
    no_character_orientation,
    settings_narrowed,
    settings_refused,
    too_many,
    unified_settings,
    walk_items,
)

MODEL = "kling-2.6"
TEXT_TO_VIDEO_PATH = "/text-to-video/kling-2.6"
IMAGE_TO_VIDEO_PATH = "/image-to-video/kling-2.6"
PROMPT_MAX_CHARS = 2500
DURATIONS = (5, 10)
RESOLUTIONS = ("720p", "1080p")
DEFAULT_RESOLUTION = "720p"
ITEM_KEYS: ItemKeys = {
    "prompt": (("text",), ()),
    "first_frame": (("url",), ()),
    "last_frame": (("url",), ()),
    "voice": (("voice_id", "id"), ()),
}
# The largest bodies (domain/body_limits.py): no image; a first and a last frame.
TEXT_TO_VIDEO_BODY = BodyLimit(0, MAX_FRAME_BYTES, "a kling-2.6 text-to-video", "")
IMAGE_TO_VIDEO_BODY = BodyLimit(2, MAX_FRAME_BYTES, "a kling-2.6 image-to-video", "first_frame, last_frame")

Prompt = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=PROMPT_MAX_CHARS)]
_AT_1080P = 'Kling 2.6 makes {} at 1080p only: set settings.resolution to "1080p"'


def _settings(valid: dict[str, Any]) -> list[FieldProblem]:
    """2.6's values within the unified settings' shape, and native audio only at 1080p."""
    problems = settings_refused(
        valid, {"multi_shot": "is kling-3.0's: Kling 2.6 makes one shot (no multi-shot video)"}
    )
    problems += settings_narrowed(
        valid,
        {
            "resolution": (
                RESOLUTIONS,
                f"Kling 2.6 makes {' or '.join(RESOLUTIONS)} videos (4k is kling-3.0's)",
            ),
            "duration": (DURATIONS, "Kling 2.6 makes videos of 5 or 10 s (3 to 15 is kling-3.0's)"),
            "audio": (
                ("native", "off"),
                "keeps a reference video's sound: omni-video's only (native or off here)",
            ),
        },
    )
    settings = unified_settings(valid)
    if (
        settings.get("audio") == "native"
        and settings.get("resolution", DEFAULT_RESOLUTION) == DEFAULT_RESOLUTION
    ):
        problems.append(FieldProblem("settings.audio", "requires", _AT_1080P.format("native audio")))
    return problems


def _text_to_video(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    return _settings(valid)


def _image_to_video(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    problems = _settings(valid) + settings_refused(
        valid, {"aspect_ratio": "not taken by image to video: the first frame decides the aspect ratio"}
    )
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return problems  # its type's problem is reported already
    found, seen = walk_items(contents, ITEM_KEYS, "Kling 2.6 image to video", prompt_max=PROMPT_MAX_CHARS)
    problems += found + too_many(seen, {"first_frame": 1, "last_frame": 1, "prompt": 1, "voice": MAX_VOICES})
    if not seen["first_frame"]:
        problems.append(FieldProblem("contents", "missing", "needs one item of type first_frame"))
    # The settings as sent: one bad key fails the whole object's type, and must not make these fire.
    settings = body.get("settings", {})
    if not isinstance(settings, dict):
        return problems
    if settings.get("resolution", DEFAULT_RESOLUTION) == DEFAULT_RESOLUTION:  # 4k: its own problem
        for n in seen["last_frame"]:
            problems.append(FieldProblem(f"contents[{n}]", "requires", _AT_1080P.format("a last frame")))
    if settings.get("audio", "off") == "off":  # original: its own problem
        for n in seen["voice"]:
            message = 'a voice speaks only with settings.audio "native" (off, the default, is silent)'
            problems.append(FieldProblem(f"contents[{n}]", "requires", message))
    return problems


TEXT_TO_VIDEO = BodyRules(
    field_types={"prompt": Prompt, "settings": Settings, "options": Options},
    required=("prompt",),
    default_model=MODEL,
    description=(
        "Kling's unified text-to-video create body for Kling 2.6: prompt up to 2500 characters; "
        "settings.duration 5 or 10, resolution 720p or 1080p, audio native (1080p only) or off, no "
        "multi_shot."
    ),
    cross_field=(_text_to_video, no_character_orientation),
)
IMAGE_TO_VIDEO = BodyRules(
    field_types={"contents": Contents, "settings": Settings, "options": Options},
    required=("contents",),
    default_model=MODEL,
    description=(
        "Kling's unified image-to-video create body for Kling 2.6. contents: one first_frame {url}, at "
        "most one last_frame {url} (1080p only) and one prompt {text} (up to 2500 characters), at most 2 "
        "voice {voice_id, id} (with settings.audio native only); settings as text to video's, without "
        "aspect_ratio."
    ),
    cross_field=(_image_to_video, no_character_orientation),
)
