"""The create body of Kling's advanced lip-sync API (``POST /v1/videos/advanced-lip-sync``): a face found
by identify-face (its ``session_id`` and ``face_id``), the audio it is to speak, cut and placed in
milliseconds, and the mix of that audio with the video's own (docs/kling-endpoints.md names the sources
and where they disagree). domain/body_rules.py applies them, through domain/task_types.py.

* ``session_id`` and ``face_choose`` are required; the session must be one identify-face answered to
  the same tenant (domain/ownership.py, when the task is accepted). ``face_choose`` holds one face:
  Kling says it lip-syncs a single person for now, so a second is refused rather than dropped upstream.
* Each face: ``face_id``; exactly one of ``audio_id`` (Kling's text-to-speech audio) and
  ``sound_file`` (an http(s) URL, or raw Base64 of .mp3/.wav/.m4a/.aac audio up to 5 MB,
  domain/audio.py); ``sound_start_time``, ``sound_end_time`` and ``sound_insert_time`` are required
  integers of milliseconds from 0.
* The cut keeps at least 2 s (``sound_end_time - sound_start_time >= 2000``) and ends within the
  audio, which Kling takes at 60 s at most (``sound_end_time <= 60000``). Whether the cut fits the real
  audio, and the inserted span the video and the face's span (overlapping it by 2 s), depends on
  files and on identify-face's faces, which the service does not keep: Kling judges those.
* ``sound_volume`` and ``original_audio_volume`` are numbers in [0, 2] (1 when absent).
* ``watermark_info`` is accepted, as in Kling's current reference; no model_name.
"""

from __future__ import annotations

from typing import Annotated, Any, Required, TypeGuard

from pydantic import Field, Strict

from webhook_service.domain.audio import Audio
from webhook_service.domain.body_rules import BodyRules
from webhook_service.domain.field_types import COMMON_FIELDS, between, documented, rule, shape
from webhook_service.domain.lip_sync_rules import NonEmpty
from webhook_service.domain.problems import FieldProblem

TYPE_NAME = "advanced-lip-sync"
MIN_CUT_MS = 2000
MAX_AUDIO_MS = 60_000
MAX_FACES = 1

Ms = Annotated[
    int,
    Strict(),
    rule("range", "must be at least 0 (milliseconds)", lambda value: value >= 0),
    documented(minimum=0, description="milliseconds"),
]
Volume = Annotated[float, Strict(), between(0, 2), documented(minimum=0, maximum=2)]
_Face = shape(
    "face_choose",
    {
        "face_id": Required[NonEmpty],
        "audio_id": NonEmpty,
        "sound_file": Audio,
        "sound_start_time": Required[Ms],
        "sound_end_time": Required[Ms],
        "sound_insert_time": Required[Ms],
        "sound_volume": Volume,
        "original_audio_volume": Volume,
    },
    total=False,
)
# At most MAX_FACES: checked in _faces_rules, so that each face's own problems are reported too.
_Faces = Annotated[list[_Face], Strict(), Field(min_length=1), documented(maxItems=MAX_FACES)]  # type: ignore[valid-type]


def _is_ms(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _face_problems(path: str, face: dict[str, Any]) -> list[FieldProblem]:
    problems = []
    if "audio_id" in face and "sound_file" in face:
        problems.append(
            FieldProblem(f"{path}.sound_file", "exclusive", "give audio_id or sound_file, not both")
        )
    elif "audio_id" not in face and "sound_file" not in face:
        problems.append(
            FieldProblem(f"{path}.sound_file", "missing", "one of audio_id and sound_file is required")
        )
    start, end = face.get("sound_start_time"), face.get("sound_end_time")
    if _is_ms(end) and end > MAX_AUDIO_MS:
        message = f"must be at most {MAX_AUDIO_MS} (ms): Kling takes audio of 60 s at most"
        problems.append(FieldProblem(f"{path}.sound_end_time", "range", message))
    if _is_ms(start) and _is_ms(end) and end - start < MIN_CUT_MS:
        message = (
            f"must be at least {MIN_CUT_MS} ms after sound_start_time ({start}): the cut keeps 2 s or more"
        )
        problems.append(FieldProblem(f"{path}.sound_end_time", "range", message))
    return problems


def _faces_rules(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    """Read from the body as sent, so these are reported with its other problems, not after them."""
    faces = body.get("face_choose")
    if not isinstance(faces, list):
        return []
    problems = []
    if len(faces) > MAX_FACES:
        message = f"must have at most {MAX_FACES} item: Kling lip-syncs one face per task for now"
        problems.append(FieldProblem("face_choose", "too_many", message))
    for n, face in enumerate(faces):
        if isinstance(face, dict):
            problems += _face_problems(f"face_choose[{n}]", face)
    return problems


RULES = BodyRules(
    field_types={
        "session_id": NonEmpty,
        "face_choose": _Faces,
        **COMMON_FIELDS,
    },
    required=("session_id", "face_choose"),
    default_model=TYPE_NAME,  # no model to choose: usage counts the type's tasks under its name
    description=(
        "Kling's advanced lip-sync create body: session_id (one identify-face answered you within 24 hours) "
        "and face_choose, one face "
        "{face_id, audio_id or sound_file (URL or raw Base64 .mp3/.wav/.m4a/.aac up to 5 MB), "
        "sound_start_time, sound_end_time (at least 2000 ms later, at most 60000), sound_insert_time in ms, "
        "sound_volume and original_audio_volume in [0, 2]}."
    ),
    cross_field=(_faces_rules,),
)
