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
  decides it). kling-3.0's ``multi_shot``, ``4k``, 3 to 15 s and ``original`` audio (omni video's, O1's
  and motion control's) are refused (``not_supported``), rather than left for Kling to refuse or ignore.
* Native audio only at 1080p (Kling: "when generating videos with native audio, only 1080P resolution is
  supported"; its capability map: "720P supports silent videos only"): ``audio`` native needs
  ``resolution`` 1080p, which is not the default (720p); so does a last frame (Kling 2.6's image to
  video page takes one at 1080p only).
* ``options`` as every unified body.

The settings' and items' shapes are the unified API's (their keys and their types, checked and
documented as one `settings` object and one `contents` item); 2.6's narrower values are checked here, so
an unknown key gets the same hint on every unified path. Kling 2.5 Turbo has 2.6's limits and its last
frame at 1080p only: `limits` and `last_frame_at_1080p` take the model's name for their messages, and
domain/kling25_rules.py calls them too.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import StringConstraints

from webhook_service.domain.body_limits import BodyLimit
from webhook_service.domain.field_types import MAX_VOICES
from webhook_service.domain.problems import FieldProblem
from webhook_service.domain.unified_rules import (
    FRAME_DECIDES_ASPECT,
    MAX_FRAME_BYTES,
    NO_ORIGINAL_AUDIO,
    ItemKeys,
    Narrowed,
    needs_one,
    no_4k,
    settings_narrowed,
    settings_refused,
    too_many,
    unified_body,
    unified_settings,
    walk_items,
)

MODEL = "kling-2.6"
TEXT_TO_VIDEO_PATH = "/text-to-video/kling-2.6"
IMAGE_TO_VIDEO_PATH = "/image-to-video/kling-2.6"
PROMPT_MAX_CHARS = 2500
DURATIONS = (5, 10)
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
NAME = "Kling 2.6"
_AT_1080P = '{} at 1080p only: set settings.resolution to "1080p"'


def limits(model: str) -> tuple[dict[str, str], Narrowed]:
    """2.6's limits on the unified settings, said of `model` (2.6's, 2.5 Turbo's): what it refuses
    (for settings_refused) and what it narrows (for settings_narrowed)."""
    refused = {"multi_shot": f"is kling-3.0's: {model} makes one shot (no multi-shot video)"}
    narrowed = {
        **no_4k(model),
        "duration": (DURATIONS, f"{model} makes videos of 5 or 10 s (3 to 15 is kling-3.0's)"),
    }
    return refused, narrowed


def _at_720p(body: dict[str, Any]) -> bool:
    """The video is made at 720p, the default. The settings as sent: one bad key fails the whole
    object's type, and must not change what they say; 4k is its own problem."""
    settings = body.get("settings", {})
    return isinstance(settings, dict) and settings.get("resolution", DEFAULT_RESOLUTION) == DEFAULT_RESOLUTION


def last_frame_at_1080p(body: dict[str, Any], seen: dict[str, list[int]], model: str) -> list[FieldProblem]:
    """Each last frame refused at 720p, the default (2.6's image to video, 2.5 Turbo's)."""
    if not _at_720p(body):
        return []
    message = _AT_1080P.format(f"{model} takes a last frame")
    return [FieldProblem(f"contents[{n}]", "requires", message) for n in seen["last_frame"]]


def _settings(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    """2.6's values within the unified settings' shape, and native audio only at 1080p (as sent, as for
    a last frame)."""
    refused, narrowed = limits(NAME)
    problems = settings_refused(valid, refused) + settings_narrowed(valid, {**narrowed, **NO_ORIGINAL_AUDIO})
    if unified_settings(body).get("audio") == "native" and _at_720p(body):
        message = _AT_1080P.format(f"{NAME} makes native audio")
        problems.append(FieldProblem("settings.audio", "requires", message))
    return problems


def _text_to_video(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    return _settings(body, valid)


def _image_to_video(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    problems = _settings(body, valid) + settings_refused(valid, FRAME_DECIDES_ASPECT)
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return problems  # its type's problem is reported already
    found, seen = walk_items(contents, ITEM_KEYS, f"{NAME} image to video", prompt_max=PROMPT_MAX_CHARS)
    problems += found + too_many(seen, {"first_frame": 1, "last_frame": 1, "prompt": 1, "voice": MAX_VOICES})
    problems += needs_one(seen, "first_frame") + last_frame_at_1080p(body, seen, NAME)
    # The settings as sent, as for a last frame; original is its own problem.
    settings = body.get("settings", {})
    if isinstance(settings, dict) and settings.get("audio", "off") == "off":
        for n in seen["voice"]:
            message = 'a voice speaks only with settings.audio "native" (off, the default, is silent)'
            problems.append(FieldProblem(f"contents[{n}]", "requires", message))
    return problems


TEXT_TO_VIDEO = unified_body(
    MODEL,
    "Kling's unified text-to-video create body for Kling 2.6: prompt up to 2500 characters; "
    "settings.duration 5 or 10, resolution 720p or 1080p, audio native (1080p only) or off, no "
    "multi_shot.",
    _text_to_video,
    prompt=Prompt,
)
IMAGE_TO_VIDEO = unified_body(
    MODEL,
    "Kling's unified image-to-video create body for Kling 2.6. contents: one first_frame {url}, at "
    "most one last_frame {url} (1080p only) and one prompt {text} (up to 2500 characters), at most 2 "
    "voice {voice_id, id} (with settings.audio native only); settings as text to video's, without "
    "aspect_ratio.",
    _image_to_video,
)
