"""The create body of Kling's older lip-sync API (``POST /v1/videos/lip-sync``): a video, and the speech
its person's lips are made to follow, given as text to be spoken or as audio (docs/kling-endpoints.md
names the sources and where they disagree); and the body of face identification
(``POST /v1/videos/identify-face``), which shares its rule on the video. domain/body_rules.py applies
them, through domain/task_types.py (identify-face through web/kling_api.py: it is no task).

* Everything but ``callback_url`` and ``external_task_id`` is inside ``input``, an object whose
  ``mode`` is required: ``text2video`` (Kling speaks ``text`` in the voice ``voice_id``) or
  ``audio2video`` (the lips follow the caller's audio).
* The video is exactly one of ``video_id`` (a Kling video of the last 30 days) and ``video_url``:
  Kling says "not both empty, not both given". What the video must be (.mp4/.mov, 2 to 10 s, at most
  100 MB, 720 to 1920 px a side) is Kling's to judge: nothing here reads it. Whose video a
  ``video_id`` is needs the store: domain/ownership.py checks it when the task is accepted.
* ``text2video`` requires ``text`` (at most 120 characters) and ``voice_id``; ``voice_language`` is
  ``zh`` or ``en`` and ``voice_speed`` 0.8 to 2.0 with one decimal place at most, as documented.
  ``audio2video`` requires ``audio_type``, then ``audio_file`` (raw Base64, domain/audio.py) when it
  is ``file``, ``audio_url`` when it is ``url``.
* A field of the other mode (text or voice_id with audio, the audio fields with text), or the audio
  field the audio_type does not name, is refused: Kling would ignore it, and the video would say
  something else than the caller meant. voice_language and voice_speed pass in either mode (one
  client sends the language with audio too; they change nothing there).
* Nothing else: no model_name, no watermark_info (in no copy of the reference); unknown fields are
  refused as everywhere and pass with KLING_EXTRA_FIELDS.
"""

from __future__ import annotations

from typing import Annotated, Any, Required

from pydantic import Strict, StringConstraints

from webhook_service.domain.audio import AudioBase64
from webhook_service.domain.body_rules import BodyRules
from webhook_service.domain.field_types import COMMON_FIELDS, Url, between, documented, enum, rule, shape
from webhook_service.domain.problems import FieldProblem

TYPE_NAME = "lip-sync"
TEXT_MAX_CHARS = 120
MODES = ("text2video", "audio2video")
_TEXT_FIELDS = ("text", "voice_id")  # what text2video needs, and audio2video has no use for
_AUDIO_FIELDS = ("audio_type", "audio_file", "audio_url")
_AUDIO_BY_TYPE = {"file": "audio_file", "url": "audio_url"}

NonEmpty = Annotated[str, StringConstraints(strict=True, min_length=1)]
Text = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=TEXT_MAX_CHARS)]
VoiceSpeed = Annotated[
    float,
    Strict(),
    between(0.8, 2.0),
    rule("precision", "must have at most one decimal place (Kling's precision)", lambda v: round(v, 1) == v),
    documented(minimum=0.8, maximum=2.0, description="speech rate, 0.8 to 2.0, one decimal place at most"),
]
_Input = shape(
    "input",
    {
        "video_id": NonEmpty,
        "video_url": Url,
        "mode": Required[enum(*MODES)],
        "text": Text,
        "voice_id": NonEmpty,
        "voice_language": enum("zh", "en"),
        "voice_speed": VoiceSpeed,
        "audio_type": enum(*_AUDIO_BY_TYPE),
        "audio_file": AudioBase64,
        "audio_url": Url,
    },
    total=False,
)


def one_video(given: dict[str, Any], prefix: str = "") -> list[FieldProblem]:
    """Exactly one of video_id and video_url (`prefix`: where they sit, "input." here)."""
    has_id, has_url = "video_id" in given, "video_url" in given
    if has_id and has_url:
        return [FieldProblem(f"{prefix}video_url", "exclusive", "give video_id or video_url, not both")]
    if not (has_id or has_url):
        return [FieldProblem(f"{prefix}video_id", "missing", "one of video_id and video_url is required")]
    return []


def _needs(given: dict[str, Any], names: tuple[str, ...], when: str) -> list[FieldProblem]:
    return [
        FieldProblem(f"input.{n}", "missing", f"is required when {when}") for n in names if n not in given
    ]


def _unused(given: dict[str, Any], names: tuple[str, ...], when: str) -> list[FieldProblem]:
    message = f"only used when {when}: remove it"
    return [FieldProblem(f"input.{n}", "requires", message) for n in names if n in given]


def _input_rules(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    """Read from the body as sent, so these are reported with its other problems, not after them."""
    given = body.get("input")
    if not isinstance(given, dict):
        return []
    problems = one_video(given, "input.")
    mode = given.get("mode")
    if mode == "text2video":
        problems += _needs(given, _TEXT_FIELDS, 'mode is "text2video"')
        problems += _unused(given, _AUDIO_FIELDS, 'mode is "audio2video"')
    elif mode == "audio2video":
        problems += _unused(given, _TEXT_FIELDS, 'mode is "text2video"')
        problems += _needs(given, ("audio_type",), 'mode is "audio2video"')
        audio_type = given.get("audio_type")
        if audio_type in _AUDIO_BY_TYPE:
            wanted = _AUDIO_BY_TYPE[audio_type]
            other = next(name for name in _AUDIO_BY_TYPE.values() if name != wanted)
            problems += _needs(given, (wanted,), f'audio_type is "{audio_type}"')
            problems += _unused(given, (other,), f'audio_type is "{other.removeprefix("audio_")}"')
    return problems


RULES = BodyRules(
    field_types={
        "input": _Input,
        "callback_url": COMMON_FIELDS["callback_url"],
        "external_task_id": COMMON_FIELDS["external_task_id"],
    },
    required=("input",),
    default_model=TYPE_NAME,  # no model to choose: usage counts the type's tasks under its name
    description=(
        "Kling's lip-sync create body (the older API): input.video_id (a video of one of your own tasks) "
        "or input.video_url (one of them), "
        'input.mode "text2video" (text up to 120 characters, voice_id, voice_language zh/en, voice_speed '
        '0.8-2.0) or "audio2video" (audio_type file with audio_file, raw Base64 .mp3/.wav/.m4a/.aac up to '
        "5 MB, or url with audio_url)."
    ),
    cross_field=(_input_rules,),
)

IDENTIFY_FACE = BodyRules(
    field_types={"video_id": NonEmpty, "video_url": Url},
    required=(),
    default_model="",
    description=(
        "Kling's identify-face body: video_id (a video of one of your own tasks, of the last 30 days) or "
        "video_url (.mp4/.mov, 2 to 60 s, at most 100 MB), exactly one. Answered at once: session_id "
        "(yours for 24 hours) and face_data."
    ),
    cross_field=(lambda body, valid: one_video(body),),
)
