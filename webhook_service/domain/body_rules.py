"""Checking a create body against one task type's rules, and describing it as JSON Schema.

The service is a drop-in front for Kling, so a request is checked against Kling's documented rules
and refused with *every* problem listed, rather than forwarded to fail upstream with one terse
message, or to create a task that fails minutes later. A body that passes is forwarded exactly as
the caller sent it: no defaults are added and no value is converted. Each task type states its rules
as a `BodyRules` (domain/validation.py, domain/text2video_rules.py); the machinery here is shared.

* ``null`` never means "absent" (Kling does not document it): omit the field instead.
* Model-dependent rules apply to the default model when ``model_name`` is absent, and are skipped
  when ``model_name`` itself is invalid.

Unknown fields: a misspelt field (``promt``) must not pass silently, leaving the caller with a video
made without it; yet a field Kling adds later must not stay blocked until the rules are updated.
So an unknown field, at the top of the body or inside one of its objects, is rejected (code
``unknown_field``, with a "did you mean" hint) unless the operator lets it through in ``extra_fields``
(the ``KLING_EXTRA_FIELDS`` setting): ``name`` at the top, ``a.b`` or ``a.*`` inside
(domain/extra_fields.py has the syntax). A nested key let through is sent as written; the object's
other keys are checked as always. A video effect's ``input``, whose keys depend on its scene, is checked
by its own rule (domain/effects_rules.py, through ``with_extras``).
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from webhook_service.domain.extra_fields import (
    HINT_CUTOFF,
    MISSPELLING_CUTOFF,
    close_matches,
    nested_allowed,
    schema_with_nested,
    top_level_allowed,
)
from webhook_service.domain.field_types import NESTED_KEYS, camera_problems
from webhook_service.domain.problems import FieldProblem, RequestInvalid
from webhook_service.integrations.outbound import refusal_of_url

# Re-exported: the effects' rules read them here, beside the machinery they extend.
__all__ = [
    "HINT_CUTOFF",
    "MISSPELLING_CUTOFF",
    "BodyRules",
    "close_matches",
    "field_problems",
    "validate_body",
]

CrossFieldRule = Callable[[dict[str, Any], dict[str, Any]], list[FieldProblem]]
# A rule that also reads the operator's extra fields (KLING_EXTRA_FIELDS): a nested shape that Kling
# extends, such as a video effect's scenes and their `input` (domain/effects_rules.py).
ExtrasRule = Callable[[dict[str, Any], dict[str, Any], frozenset[str]], list[FieldProblem]]


@dataclass(frozen=True)
class BodyRules:
    """One task type's create body: its fields' types, the required ones, the fields only some
    models take, and rules across fields (given the body and the values that passed their types)."""

    field_types: dict[str, Any]
    required: tuple[str, ...]
    default_model: str
    description: str  # the body's schema description: what JSON Schema cannot say
    model_only: dict[str, tuple[str, ...]] = field(default_factory=dict)
    cross_field: tuple[CrossFieldRule, ...] = ()
    with_extras: tuple[ExtrasRule, ...] = ()

    @property
    def known_fields(self) -> frozenset[str]:
        return frozenset(self.field_types)

    @cached_property
    def adapters(self) -> dict[str, TypeAdapter[Any]]:
        return {name: TypeAdapter(field_type) for name, field_type in self.field_types.items()}


# pydantic's own error types, as (our code, message template over the error's context).
_PYDANTIC_ERRORS = {
    "missing": ("missing", "is required"),
    "string_type": ("type", "must be a string"),
    "int_type": ("type", "must be an integer"),
    "float_type": ("type", "must be a number"),
    "bool_type": ("type", "must be true or false"),
    "list_type": ("type", "must be an array"),
    "dict_type": ("type", "must be an object"),
    "string_too_short": ("too_short", "must not be empty"),
    "string_too_long": ("too_long", "must be at most {max_length} characters"),
    "too_short": ("too_few", "must have at least {min_length} items"),
    "too_long": ("too_many", "must have at most {max_length} items"),
    "string_pattern_mismatch": (
        "format",
        "must be printable ASCII without spaces or other whitespace, and without '~' (reserved)",
    ),
    "extra_forbidden": ("unknown_field", "unknown field"),
}


def _unknown_message(name: str, candidates: Iterable[str], otherwise: str) -> str:
    hints = close_matches(name, candidates, HINT_CUTOFF)
    if hints:
        return "unknown field; did you mean " + " or ".join(f"'{hint}'" for hint in hints) + "?"
    return f"unknown field; {otherwise}"


def _unknown_top_level(name: str, known: frozenset[str], extra_fields: frozenset[str]) -> FieldProblem | None:
    if top_level_allowed(name, known, extra_fields):
        return None
    otherwise = "a new Kling field can be let through with the KLING_EXTRA_FIELDS setting"
    return FieldProblem(name, "unknown_field", _unknown_message(name, known, otherwise))


def _path(loc: tuple[str | int, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else part
    return path


def _from_pydantic(
    field_name: str, error: ErrorDetails, extra_fields: frozenset[str] = frozenset()
) -> FieldProblem | None:
    """The error as a problem at its path; None for an unknown nested key the operator let through."""
    loc = (field_name, *error["loc"])
    mapped = _PYDANTIC_ERRORS.get(error["type"])
    if mapped is None:  # one of ours, raised as PydanticCustomError with our code as its type
        return FieldProblem(_path(loc), error["type"], error["msg"])
    code, message = mapped[0], mapped[1].format(**error.get("ctx", {}))
    if code == "unknown_field":
        parent = next(part for part in reversed(loc[:-1]) if isinstance(part, str))
        allowed = NESTED_KEYS[parent]
        if nested_allowed(tuple(str(part) for part in loc if isinstance(part, str)), allowed, extra_fields):
            return None
        message = _unknown_message(str(loc[-1]), allowed, "allowed: " + ", ".join(allowed))
    elif code == "type" and error["input"] is None:
        message += ", not null (omit the field instead)"
    return FieldProblem(_path(loc), code, message)


def field_problems(
    field_name: str, error: ValidationError, extra_fields: frozenset[str] = frozenset()
) -> list[FieldProblem]:
    """A nested value's errors, as body fields' are reported: paths below ``field_name``, without the
    unknown keys `extra_fields` lets through."""
    found = (_from_pydantic(field_name, details, extra_fields) for details in error.errors())
    return [problem for problem in found if problem is not None]


def _model_problems(rules: BodyRules, body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    if "model_name" in body and "model_name" not in valid:
        return []  # the model itself is wrong: which fields it takes is moot
    model = valid.get("model_name", rules.default_model)
    default = "" if "model_name" in body else " (the default when model_name is absent)"
    return [
        FieldProblem(
            name, "not_supported_by_model", f"only supported by {', '.join(models)}, not {model}{default}"
        )
        for name, models in rules.model_only.items()
        if name in body and model not in models
    ]


def validate_body(
    rules: BodyRules,
    body: object,
    *,
    extra_fields: frozenset[str] | None = None,
    allowed_hosts: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Returns the body to forward upstream (the caller's fields and values, unchanged, without
    defaults), or raises RequestInvalid listing every problem found.

    ``extra_fields`` names unknown fields to let through, at the top (``"*"``: any that is not a close
    misspelling of a known field) and inside objects (``a.b``, ``a.*``): domain/extra_fields.py.
    ``allowed_hosts`` are the internal hosts a ``callback_url`` may name (``NOTIFY_ALLOWED_HOSTS``): the
    service would refuse to call any other internal address, so a request naming one is refused now,
    before a video is paid for.
    """
    if not isinstance(body, dict):
        raise RequestInvalid([FieldProblem("", "type", "request body must be a JSON object")])
    problems = [FieldProblem(name, "missing", "is required") for name in rules.required if name not in body]
    valid: dict[str, Any] = {}
    for name, value in body.items():
        adapter = rules.adapters.get(name)
        if adapter is None:
            unknown = _unknown_top_level(str(name), rules.known_fields, extra_fields or frozenset())
            problems += [unknown] if unknown else []
            continue
        try:
            valid[name] = adapter.validate_python(value)
        except ValidationError as exc:
            found = field_problems(name, exc, extra_fields or frozenset())
            problems += found
            if not found:  # only keys the operator let through: the rest is as valid as it is
                valid[name] = value
    for cross_field in rules.cross_field:
        problems += cross_field(body, valid)
    for with_extras in rules.with_extras:
        problems += with_extras(body, valid, extra_fields or frozenset())
    problems += _model_problems(rules, body, valid)
    if "camera_control" in valid:
        problems += camera_problems(valid["camera_control"])
    if "callback_url" in valid and (why := refusal_of_url(valid["callback_url"], allowed_hosts)):
        message = f"points at a {why} address, which the service never calls (see NOTIFY_ALLOWED_HOSTS)"
        problems.append(FieldProblem("callback_url", "blocked_address", message))
    if problems:
        raise RequestInvalid(problems)
    return dict(body)


def body_json_schema(
    rules: BodyRules, extra_fields: frozenset[str] = frozenset(), ref_template: str = "#/$defs/{model}"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The create body as JSON Schema, built from the same types that validate it so the two never
    drift, and the nested shapes it refers to (through ``ref_template``).

    Rules across fields (fields only some models take, exactly one camera axis, ...) have no JSON
    Schema form: validation still applies them.
    """
    definitions: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    for name, adapter in rules.adapters.items():
        schema = adapter.json_schema(ref_template=ref_template)
        definitions.update(schema.pop("$defs", {}))
        properties[name] = schema
    # Names with ':' or '.' let a value or a nested key through (effect_scene:<name>, settings.<key>).
    new_fields = {name for name in extra_fields - rules.known_fields - {"*"} if not set(name) & {":", "."}}
    properties.update({name: {} for name in sorted(new_fields)})
    schema_with_nested(properties, definitions, extra_fields)
    body = {
        "description": rules.description,
        "type": "object",
        "properties": properties,
        "required": list(rules.required),
        "additionalProperties": "*" in extra_fields,
    }
    return body, definitions
