"""What kling-v3 adds to the /v1 text-to-video and image-to-video bodies: durations from 3 to 15 seconds
and multi-shot videos (docs/kling-endpoints.md names the sources and where they disagree). Shared by
domain/text2video_rules.py and domain/validation.py, applied by domain/body_rules.py.

* ``duration`` is a string, as ever: ``"5"`` or ``"10"``, and with kling-v3 any of ``"3"`` to ``"15"``.
  A number is refused with a message saying so (converting it would rewrite the request).
* ``multi_shot`` (boolean), ``shot_type`` and ``multi_prompt`` are kling-v3's only. With ``multi_shot``
  true, ``shot_type`` is required: ``customize`` takes the shots from ``multi_prompt`` (required; the
  body's ``prompt`` would be ignored, so it is refused), ``intelligence`` has Kling cut ``prompt``
  (required) into shots itself (``multi_prompt`` refused). Without ``multi_shot`` true, ``shot_type``
  and ``multi_prompt`` are refused: Kling ignores them, and the video would not be what the caller meant.
* ``multi_prompt`` holds 1 to 6 shots ``{index, prompt, duration}``: ``index`` an integer, each index
  once; ``prompt`` 1 to 512 characters; ``duration`` a string of whole seconds, at least 1, the shots'
  adding up to the video's ``duration`` (``"5"`` when absent).
* A multi-shot video has no first-and-last-frame form: image-to-video's ``image_tail`` is refused with
  ``multi_shot`` true.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, Strict, StringConstraints
from pydantic_core import PydanticCustomError

from webhook_service.domain.field_types import documented, rule, shape
from webhook_service.domain.problems import FieldProblem

V3 = "kling-v3"
DURATIONS = tuple(str(seconds) for seconds in range(3, 16))  # kling-v3's
CLASSIC_DURATIONS = ("5", "10")  # every other model's
DEFAULT_DURATION = "5"
MAX_SHOTS = 6
SHOT_MAX_CHARS = 512
SHOT_FIELDS = ("multi_shot", "shot_type", "multi_prompt")
_DURATION_WORDS = '"5" or "10" (kling-v3: "3" to "15")'


def _reject_number(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise PydanticCustomError("type", f"must be a string, {_DURATION_WORDS}: not a number")
    return value


Duration: Any = Annotated[
    str,
    BeforeValidator(_reject_number),
    Strict(),
    rule("enum", f"must be {_DURATION_WORDS}", DURATIONS.__contains__),
    documented(enum=list(DURATIONS), description=f"seconds, a string: {_DURATION_WORDS}"),
]
_ShotSeconds = Annotated[
    str,
    StringConstraints(strict=True, pattern=r"^[0-9]{1,2}$"),
    rule("range", "must be at least 1 (whole seconds)", lambda value: int(value) >= 1),
    documented(description="the shot's whole seconds, a string: at least 1"),
]
_Shot = shape(
    "multi_prompt",
    {
        "index": Annotated[int, Strict()],
        "prompt": Annotated[str, StringConstraints(strict=True, min_length=1, max_length=SHOT_MAX_CHARS)],
        "duration": _ShotSeconds,
    },
)
FIELDS: dict[str, Any] = {
    "multi_shot": Annotated[bool, Strict()],
    "shot_type": Annotated[
        str,
        Strict(),
        rule("enum", "must be one of: customize, intelligence", ("customize", "intelligence").__contains__),
        documented(enum=["customize", "intelligence"]),
    ],
    "multi_prompt": Annotated[list[_Shot], Strict(), Field(min_length=1, max_length=MAX_SHOTS)],  # type: ignore[valid-type]
}
MODEL_ONLY = dict.fromkeys(SHOT_FIELDS, (V3,))


def model_in(body: dict[str, Any], valid: dict[str, Any], default: str) -> str | None:
    """The model the body asks for (`default` when absent); None when `model_name` is itself wrong."""
    if "model_name" in body and "model_name" not in valid:
        return None
    model = valid.get("model_name", default)
    return model if isinstance(model, str) else None


def duration_problems(default_model: str) -> Callable[[dict[str, Any], dict[str, Any]], list[FieldProblem]]:
    """A rule across fields (domain/body_rules.py): a duration other than "5" and "10" is kling-v3's only,
    `default_model` being the type's model when the body names none."""

    def check(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
        model, duration = model_in(body, valid, default_model), valid.get("duration")
        if model is None or model == V3 or duration is None or duration in CLASSIC_DURATIONS:
            return []
        message = f'"{duration}" s is only supported by {V3}; {model} takes "5" or "10"'
        return [FieldProblem("duration", "not_supported_by_model", message)]

    return check


def shot_problems(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    """The multi-shot fields together: which go with which, and the shots against the duration."""
    if body.get("multi_shot") is not True:
        unused = [name for name in ("shot_type", "multi_prompt") if name in body]
        return [FieldProblem(name, "requires", "only used when multi_shot is true") for name in unused]
    if "multi_shot" not in valid:
        return []
    shot_type = valid.get("shot_type")
    if "shot_type" not in body:
        return [FieldProblem("shot_type", "missing", "is required when multi_shot is true")]
    problems: list[FieldProblem] = []
    if shot_type == "customize":
        if "multi_prompt" not in body:
            problems.append(
                FieldProblem("multi_prompt", "missing", 'is required when shot_type is "customize"')
            )
        if "prompt" in body:
            message = (
                'ignored when shot_type is "customize" (each shot has its prompt in multi_prompt): remove it'
            )
            problems.append(FieldProblem("prompt", "requires", message))
        # The video's duration, when it is known: given and valid, or absent (Kling's default).
        duration = (
            valid.get("duration", DEFAULT_DURATION) if "duration" in valid or "duration" not in body else None
        )
        problems += _shots(valid.get("multi_prompt"), duration)
    elif shot_type == "intelligence":
        if "multi_prompt" in body:
            message = 'only used when shot_type is "customize": Kling cuts the prompt into shots itself'
            problems.append(FieldProblem("multi_prompt", "requires", message))
        if "prompt" not in body:
            problems.append(FieldProblem("prompt", "missing", 'is required when shot_type is "intelligence"'))
    if "image_tail" in body:
        message = "not with multi_shot: a multi-shot video has no last frame"
        problems.append(FieldProblem("image_tail", "exclusive", message))
    return problems


def _shots(shots: Any, duration: str | None) -> list[FieldProblem]:
    """Each index once; the shots' seconds adding up to the video's (when both are known)."""
    if not isinstance(shots, list):
        return []
    problems, seen = [], set()
    for n, shot in enumerate(shots):
        if shot["index"] in seen:
            problems.append(FieldProblem(f"multi_prompt[{n}].index", "duplicate", "is another shot's index"))
        seen.add(shot["index"])
    total = sum(int(shot["duration"]) for shot in shots)
    if duration is not None and total != int(duration):
        message = f"gives its shots {total} s in all; they must add up to the duration, {duration} s"
        problems.append(FieldProblem("multi_prompt", "mismatch", message))
    return problems
