"""The create body of Kling's unified text-to-video for Kling 2.6 (``POST /text-to-video/kling-2.6``): the
kling-3.0 body's shape (domain/unified_rules.py: ``prompt``, ``settings``, ``options``) with 2.6's limits
(docs/kling-endpoints.md, "The unified API", names the sources).

* ``prompt`` is required, 1 to 2500 characters (kling-3.0 takes 3072). Kling 2.6 makes one shot: a prompt
  written as shots is sent as the text it is, no shot rule applies.
* ``settings``: ``audio`` native/off, ``resolution`` 720p/1080p (no 4k), ``aspect_ratio`` 16:9/9:16/1:1,
  ``duration`` 5 or 10, an integer. kling-3.0's ``multi_shot``, ``4k``, 3 to 15 s and omni's ``original``
  audio are refused (``not_supported``), rather than left for Kling to refuse or ignore.
* Native audio only at 1080p (Kling: "when generating videos with native audio, only 1080P resolution is
  supported"; its capability map: "720P supports silent videos only"): ``audio`` native needs
  ``resolution`` 1080p, which is not the default (720p).
* ``options`` as every unified body.

The settings' shape is the unified API's one (its keys and their types, checked and documented as one
`settings` object); 2.6's narrower values are checked here, so an unknown key gets the same hint on every
unified path. The checks 2.6 shares with the turbo models (one shot, 720p or 1080p, 5 or 10 s) take the
model's name for their messages: domain/kling25_rules.py and kling30_turbo_rules.py call them too.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import StringConstraints

from webhook_service.domain.body_limits import BodyLimit
from webhook_service.domain.body_rules import BodyRules
from webhook_service.domain.problems import FieldProblem
from webhook_service.domain.unified_rules import MAX_FRAME_BYTES, Options, Settings, unified_settings

MODEL = "kling-2.6"
TEXT_TO_VIDEO_PATH = "/text-to-video/kling-2.6"
PROMPT_MAX_CHARS = 2500
DURATIONS = (5, 10)
RESOLUTIONS = ("720p", "1080p")
DEFAULT_RESOLUTION = "720p"
# No image: its fields alone (domain/body_limits.py).
TEXT_TO_VIDEO_BODY = BodyLimit(0, MAX_FRAME_BYTES, "a kling-2.6 text-to-video", "")

Prompt = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=PROMPT_MAX_CHARS)]


def one_shot_problems(settings: dict[str, Any], model: str) -> list[FieldProblem]:
    """kling-3.0's `multi_shot` refused for a model that makes one shot (2.6, 2.5 Turbo)."""
    if "multi_shot" not in settings:
        return []
    message = f"is kling-3.0's: {model} makes one shot (no multi-shot video)"
    return [FieldProblem("settings.multi_shot", "not_supported", message)]


def resolution_problems(settings: dict[str, Any], model: str) -> list[FieldProblem]:
    """kling-3.0's 4k refused for a model that makes 720p or 1080p only (2.6, 2.5 Turbo, 3.0 Turbo)."""
    if "resolution" not in settings or settings["resolution"] in RESOLUTIONS:
        return []
    message = f"{model} makes {' or '.join(RESOLUTIONS)} videos (4k is kling-3.0's)"
    return [FieldProblem("settings.resolution", "not_supported", message)]


def duration_problems(settings: dict[str, Any], model: str) -> list[FieldProblem]:
    """The unified type's 3 to 15 s narrowed to 5 or 10 (2.6, 2.5 Turbo)."""
    if "duration" not in settings or settings["duration"] in DURATIONS:
        return []
    message = f"{model} makes videos of 5 or 10 s (3 to 15 is kling-3.0's)"
    return [FieldProblem("settings.duration", "not_supported", message)]


def _limits(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    """2.6's values within the unified settings' shape, and native audio only at 1080p."""
    settings = unified_settings(valid)
    problems = one_shot_problems(settings, "Kling 2.6") + resolution_problems(settings, "Kling 2.6")
    problems += duration_problems(settings, "Kling 2.6")
    audio = settings.get("audio")
    if audio == "original":
        message = "keeps a reference video's sound: omni-video's only (native or off here)"
        problems.append(FieldProblem("settings.audio", "not_supported", message))
    if audio == "native" and settings.get("resolution", DEFAULT_RESOLUTION) == DEFAULT_RESOLUTION:
        message = 'Kling 2.6 makes native audio at 1080p only: set settings.resolution to "1080p"'
        problems.append(FieldProblem("settings.audio", "requires", message))
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
    cross_field=(_limits,),
)
