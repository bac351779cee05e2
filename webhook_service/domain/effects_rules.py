"""The create body of Kling's video effects API (``POST /v1/videos/effects``): a preset scene
(``effect_scene``) applied to one photo or two, ``{effect_scene, input: {...}, callback_url,
external_task_id}``, where what ``input`` takes depends on the scene (docs/kling-endpoints.md names the
sources and where they disagree; domain/effect_scenes.py lists the scenes). domain/body_rules.py applies
these rules, through domain/task_types.py.

* ``effect_scene`` and ``input`` are required. An unknown scene is refused with "did you mean" and the
  known scenes: a misspelt scene would otherwise fail upstream with a terse message, or not at all.
* ``input`` is checked against the scene's group, every problem at its path (``input.images[1]``):
  - single-image scenes: ``image`` required (a URL or raw Base64 up to 10 MB), ``duration`` "5" or
    "10" (Kling's current reference documents none; gateways send "5"), no model;
  - the first five (bloombloom, dizzydizzy, fuzzyfuzzy, squish, expansion): ``image`` required,
    ``duration`` only "5" and ``model_name`` only kling-v1-6, both optional (Kling's current examples
    send the image alone);
  - two-image scenes (hug_pro, kiss_pro, ...): ``images`` exactly 2 (left, then right), ``duration``;
  - the first three two-person scenes (hug, kiss, heart_gesture): ``images`` exactly 2 and ``duration``
    "5" or "10" required (no source gives it a default), ``model_name`` kling-v1 (Kling's default),
    kling-v1-5 or kling-v1-6, ``mode`` std (default) or pro.
  A field another group takes (``images`` for a single-image scene, ``model_name`` for a newer scene) is
  refused with what the scene takes; any other unknown key with "did you mean".
* Kling adds scenes often, and fields with them: both pass with KLING_EXTRA_FIELDS, the same setting as
  new top-level fields. ``effect_scene:<name>`` names a new scene, ``input.<key>`` a new key of
  ``input`` (``input.*`` any that is not a close misspelling of one the scene takes); ``*`` lets through
  any scene and key that is not a close misspelling of a known one. A new
  scene's group is read from its input (``images``: two images, else one), and every field either group
  knows is checked by its type.
* The body has no ``watermark_info`` in Kling's reference (only its answers show one): refused as
  unknown, as elsewhere, it passes with KLING_EXTRA_FIELDS.
* Pixels (at least 300 px a side, aspect 1:2.5 to 2.5:1, jpg/png, a detectable face for the two-person
  scenes) are left to Kling, which reads the images anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, Strict, StringConstraints, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from webhook_service.domain import effect_scenes as scenes
from webhook_service.domain.body_rules import (
    HINT_CUTOFF,
    MISSPELLING_CUTOFF,
    BodyRules,
    close_matches,
    field_problems,
)
from webhook_service.domain.extra_fields import nested_allowed
from webhook_service.domain.field_types import COMMON_FIELDS, Duration, Image, documented, enum
from webhook_service.domain.problems import FieldProblem

FIRST_TWO_PERSON_MODELS = ("kling-v1", "kling-v1-5", "kling-v1-6")
DEFAULT_MODEL = "effects"  # what usage counts a task under when its input names no model
SCENE_PREFIX = "effect_scene:"  # KLING_EXTRA_FIELDS entry naming a scene newer than our lists
INPUT_PREFIX = "input."  # KLING_EXTRA_FIELDS entry naming a new key of input


def _only_five(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise PydanticCustomError("type", 'must be the string "5", not a number')
    return value


_Pair = Annotated[list[Image], Strict(), Field(min_length=2, max_length=2)]
_FiveSeconds: Any = Annotated[enum("5"), BeforeValidator(_only_five)]
_AnyModel = Annotated[str, StringConstraints(strict=True, min_length=1)]


@dataclass(frozen=True)
class Group:
    """What one kind of scene takes in ``input``: its keys' types and the required ones."""

    kind: str  # in messages: "a single-image effect"
    fields: dict[str, Any]
    required: tuple[str, ...]

    @cached_property
    def adapters(self) -> dict[str, TypeAdapter[Any]]:
        return {name: TypeAdapter(field_type) for name, field_type in self.fields.items()}


SINGLE = Group("a single-image effect", {"image": Image, "duration": Duration}, ("image",))
FIRST_SINGLE = Group(
    "one of the first single-image effects",
    {"image": Image, "duration": _FiveSeconds, "model_name": enum("kling-v1-6")},
    ("image",),
)
TWO_IMAGE = Group("a two-image effect", {"images": _Pair, "duration": Duration}, ("images",))
FIRST_TWO_PERSON = Group(
    "one of the first two-person effects",
    {
        "images": _Pair,
        "duration": Duration,
        "model_name": enum(*FIRST_TWO_PERSON_MODELS),
        "mode": enum("std", "pro"),
    },
    ("images", "duration"),
)
# A scene let through by KLING_EXTRA_FIELDS: whatever either group knows, checked by its type.
_NEW_FIELDS = {"duration": Duration, "model_name": _AnyModel, "mode": enum("std", "pro")}
NEW_SINGLE = Group("a single-image effect", {"image": Image, **_NEW_FIELDS}, ("image",))
NEW_TWO_IMAGE = Group("a two-image effect", {"images": _Pair, **_NEW_FIELDS}, ("images",))

SCENES: dict[str, Group] = {
    **dict.fromkeys(scenes.SINGLE_IMAGE_SCENES + scenes.RETIRED_SINGLE_IMAGE_SCENES, SINGLE),
    **dict.fromkeys(scenes.FIRST_SINGLE_IMAGE_SCENES, FIRST_SINGLE),
    **dict.fromkeys(scenes.TWO_IMAGE_SCENES, TWO_IMAGE),
    **dict.fromkeys(scenes.FIRST_TWO_PERSON_SCENES, FIRST_TWO_PERSON),
}
INPUT_KEYS = ("image", "images", "duration", "model_name", "mode")


def _scene_message(scene: str) -> str:
    hints = close_matches(scene, SCENES, HINT_CUTOFF)
    hint = "did you mean " + " or ".join(f"'{h}'" for h in hints) + "? " if hints else ""
    single = [name for name, group in SCENES.items() if group in (SINGLE, FIRST_SINGLE)]
    two = [name for name, group in SCENES.items() if group in (TWO_IMAGE, FIRST_TWO_PERSON)]
    return (
        f"unknown effect scene; {hint}a scene Kling added since can be let through with "
        f"KLING_EXTRA_FIELDS ({SCENE_PREFIX}<name>). Known two-image scenes: {', '.join(two)}. "
        f"Known single-image scenes: {', '.join(single)}"
    )


def _new_scene_allowed(scene: str, extra_fields: frozenset[str]) -> bool:
    if SCENE_PREFIX + scene in extra_fields:
        return True
    return "*" in extra_fields and not close_matches(scene, SCENES, MISSPELLING_CUTOFF)


def _unknown_key(scene: str, group: Group, key: str, extra_fields: frozenset[str]) -> FieldProblem | None:
    path = INPUT_PREFIX + key
    if key in INPUT_KEYS:  # another group's field: say what this scene takes instead
        takes = ", ".join(group.fields)
        return FieldProblem(path, "unknown_field", f"not taken by {scene}, {group.kind}; it takes {takes}")
    if nested_allowed(("input", key), group.fields, extra_fields) or (
        "*" in extra_fields and not close_matches(key, group.fields, MISSPELLING_CUTOFF)
    ):
        return None
    hints = close_matches(key, group.fields, HINT_CUTOFF)
    if hints:
        message = "unknown field; did you mean " + " or ".join(f"'{h}'" for h in hints) + "?"
    else:
        message = (
            f"unknown field; {scene} takes {', '.join(group.fields)} (a new one: KLING_EXTRA_FIELDS {path})"
        )
    return FieldProblem(path, "unknown_field", message)


def _input_problems(
    body: dict[str, Any], valid: dict[str, Any], extra_fields: frozenset[str]
) -> list[FieldProblem]:
    """The scene known (or let through), and ``input`` as the scene's group takes it."""
    if "effect_scene" not in valid:
        return []  # missing or not a string: reported by its type
    scene = valid["effect_scene"]
    group = SCENES.get(scene)
    problems: list[FieldProblem] = []
    if group is None and not _new_scene_allowed(scene, extra_fields):
        problems.append(FieldProblem("effect_scene", "enum", _scene_message(scene)))
    given = valid.get("input")
    if given is None:
        return problems  # missing or not an object: reported by its type
    if group is None:
        group = NEW_TWO_IMAGE if "images" in given else NEW_SINGLE
        if problems:  # an unknown scene: its input is checked for what it holds, not what it lacks
            group = Group(group.kind, group.fields, ())
    for key in group.required:
        if key not in given:
            problems.append(FieldProblem(INPUT_PREFIX + key, "missing", f"is required for {scene}"))
    for key, value in given.items():
        adapter = group.adapters.get(key)
        if adapter is None:
            unknown = _unknown_key(scene, group, str(key), extra_fields)
            problems += [unknown] if unknown else []
            continue
        try:
            adapter.validate_python(value)
        except ValidationError as error:
            problems += field_problems(INPUT_PREFIX + key, error)
    return problems


_INPUT_SCHEMA = {
    "description": (
        "What the scene takes: one image (`image`) or two (`images`, left then right), each an http(s) "
        'URL or raw Base64 up to 10 MB; `duration` "5" or "10"; hug, kiss and heart_gesture also '
        "`model_name` and `mode`, bloombloom, dizzydizzy, fuzzyfuzzy, squish and expansion `model_name` "
        "kling-v1-6."
    ),
    "properties": {
        "image": TypeAdapter(Image).json_schema(),
        "images": TypeAdapter(_Pair).json_schema(),
        "duration": {"type": "string", "enum": ["5", "10"]},
        "model_name": {"type": "string", "enum": [*FIRST_TWO_PERSON_MODELS]},
        "mode": {"type": "string", "enum": ["std", "pro"]},
    },
}
_Scene = Annotated[
    str,
    StringConstraints(strict=True, min_length=1),
    documented(description=f"A video effect scene: one of the {len(SCENES)} known (hug, bloombloom, ...)."),
]
_Input = Annotated[dict[str, Any], Strict(), documented(**_INPUT_SCHEMA)]

RULES = BodyRules(
    field_types={
        "effect_scene": _Scene,
        "input": _Input,
        "callback_url": COMMON_FIELDS["callback_url"],
        "external_task_id": COMMON_FIELDS["external_task_id"],
    },
    required=("effect_scene", "input"),
    default_model=DEFAULT_MODEL,
    description=(
        "Kling's video effects create body: a scene (effect_scene) and its input, one photo (input.image) "
        "or two (input.images, exactly 2), each an http(s) URL or raw Base64 up to 10 MB. What input takes "
        "depends on the scene; a scene Kling added since passes with KLING_EXTRA_FIELDS "
        "(effect_scene:<name>)."
    ),
    with_extras=(_input_problems,),
)
