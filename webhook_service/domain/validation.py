"""Validation of the create body of Kling's image-to-video API (``POST /v1/videos/image2video``).

The service is a drop-in front for Kling, so a request is checked here against Kling's documented
rules and refused with *every* problem listed, rather than forwarded to fail upstream with one terse
message, or to create a task that fails minutes later. A body that passes is forwarded exactly as
the caller sent it: no defaults are added and no value is converted.

Decisions where the documentation leaves room:

* ``duration`` must be the string ``"5"`` or ``"10"``, as Kling documents it; the integers 5 and 10
  are rejected with a message saying so, since converting them would silently rewrite the request.
* ``null`` never means "absent" (Kling does not document it): omit the field instead.
* ``camera_control.config`` is required when ``type`` is ``"simple"`` (a simple move without axes
  means nothing) and refused with every other type.
* ``external_task_id`` is 1 to 64 printable ASCII characters without whitespace or ``~`` (which the
  service reserves to keep tenants' ids apart upstream, domain/tenants.py): the task is stored
  and queried (in a URL path) under it, where spaces and non-ASCII text invite mistakes.
* Images (``image``, ``image_tail``, ``static_mask``, ``dynamic_masks[].mask``) are an http(s) URL,
  never fetched here, or raw Base64 decoding to at most 10 MB. Pixel size, aspect ratio, file type
  and mask resolution are left to Kling, which reads the image anyway.
* Model-dependent rules apply to the default ``kling-v1`` when ``model_name`` is absent, and are
  skipped when ``model_name`` itself is invalid.

Unknown fields: a misspelt field (``promt``) must not pass silently, leaving the caller with a video
made without it; yet a field Kling adds later must not stay blocked until this module is updated.
So an unknown top-level field is rejected (code ``unknown_field``, with a "did you mean" hint)
unless the operator names it in ``extra_fields`` (the ``KLING_EXTRA_FIELDS`` setting). With ``"*"``
there, every unknown field passes except a close misspelling of a known one (equal ignoring case,
``_`` and ``-``, or difflib similarity >= 0.8), which is still rejected. Unknown keys inside nested
objects are always rejected: those shapes are small and fixed.
"""

import base64
import binascii
import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, NotRequired
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    with_config,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from typing_extensions import TypedDict

from webhook_service.domain.errors import ServiceError
from webhook_service.integrations.outbound import refusal_of_url

MODEL_NAMES = (
    "kling-v1",
    "kling-v1-5",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1",
    "kling-v2-1-master",
    "kling-v2-5",
    "kling-v2-5-turbo",
    "kling-v2-6",
)
DEFAULT_MODEL = "kling-v1"
CAMERA_TYPES = ("simple", "down_back", "forward_up", "right_turn_forward", "left_turn_forward")
CAMERA_AXES = ("horizontal", "vertical", "pan", "tilt", "roll", "zoom")
MAX_IMAGE_BYTES = 10 * 1024 * 1024
# Similarity above which an unknown field counts as a misspelling even when "*" lets new fields
# through; the hint in messages uses a looser bound, since a wrong guess there costs nothing.
MISSPELLING_CUTOFF = 0.8
HINT_CUTOFF = 0.6

# Fields Kling accepts only with some models.
_MODEL_ONLY = {"sound": ("kling-v2-6",), "voice_list": ("kling-v2-6",), "cfg_scale": MODEL_NAMES[:3]}
# At most one of these groups per request: first + last frame, motion brush, camera control.
_EXCLUSIVE_GROUPS = (("image_tail",), ("static_mask", "dynamic_masks"), ("camera_control",))


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with a request, addressed by the path of the field it concerns."""

    field: str  # "image", "camera_control.config.zoom", "dynamic_masks[2].trajectories[0].x"; "" = body
    code: str  # machine-readable, e.g. "missing", "type", "enum", "unknown_field", "exclusive"
    message: str  # human sentence about the field

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class RequestInvalid(ServiceError):
    """Carries every problem found, so that a client can fix its request in one round trip."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field or '(body)'}: {p.message}" for p in problems))
        self.problems = problems


def _rule(code: str, message: str, holds: Callable[[Any], bool]) -> AfterValidator:
    """A check reported under our own code and message rather than a pydantic error type."""

    def check(value: Any) -> Any:
        if not holds(value):
            raise PydanticCustomError(code, message)
        return value

    return AfterValidator(check)


def _enum(*allowed: str) -> Any:
    """A string enum whose error lists the allowed values plainly (unlike pydantic's Literal)."""
    return Annotated[
        str,
        Strict(),
        _rule("enum", f"must be one of: {', '.join(allowed)}", allowed.__contains__),
        _documented(enum=list(allowed)),
    ]


def _documented(**schema: Any) -> Any:
    """JSON Schema keywords for the OpenAPI document only: validation is the rules beside them."""
    return Field(json_schema_extra=schema)


def _between(low: float, high: float) -> AfterValidator:
    """A closed range, written so that NaN and infinities (which json.loads accepts) fail it too."""
    return _rule("range", f"must be between {low} and {high}", lambda value: low <= value <= high)


def is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. a malformed IPv6 host
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _check_image(value: str) -> str:
    """Kling takes a URL or raw Base64; a Base64 string never contains ':', so a colon means URL."""
    if value[:5].lower() == "data:":
        raise PydanticCustomError("format", "must be raw Base64: strip the 'data:...;base64,' prefix")
    if ":" in value:
        if not is_http_url(value):
            raise PydanticCustomError("format", "must be an http or https URL with a host, or raw Base64")
        return value
    try:
        size = len(base64.b64decode(value, validate=True))
    except binascii.Error:
        raise PydanticCustomError("format", "is neither an http(s) URL nor valid Base64") from None
    if size > MAX_IMAGE_BYTES:
        raise PydanticCustomError("too_large", "decodes to more than 10 MB, Kling's limit")
    return value


def _reject_number(value: object) -> object:
    """Gives integer durations a clearer message than a bare type error."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise PydanticCustomError("type", 'must be the string "5" or "10", not a number')
    return value


# What _check_image accepts, as JSON Schema patterns for the OpenAPI document (a subset of URLs: a
# generator finds valid ones with it). "$(?!\n)": in Python, "$" also matches before a final newline.
_URL_PATTERN = r"^[hH][tT][tT][pP][sS]?://[A-Za-z0-9.-]+(:[0-9]{1,5})?([/?#][!-~]*)?$(?!\n)"
_BASE64_PATTERN = r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$(?!\n)"
_Image = Annotated[
    str,
    StringConstraints(strict=True, min_length=1),
    AfterValidator(_check_image),
    _documented(
        description="An http(s) URL, or raw Base64 (no data: prefix) of at most 10 MB.",
        anyOf=[{"pattern": _URL_PATTERN}, {"pattern": _BASE64_PATTERN}],
    ),
]
_Prompt = Annotated[str, StringConstraints(strict=True, max_length=2500)]
_Axis = Annotated[float, _between(-10, 10), _documented(minimum=-10, maximum=10)]
_Url = Annotated[
    str,
    Strict(),
    _rule("format", "must be an http or https URL with a host", is_http_url),
    _documented(pattern=_URL_PATTERN),
]
# Printable ASCII ("!" to "}") without whitespace; "~" is reserved (domain/tenants.py: it keeps tenants'
# ids apart upstream).
_TaskId = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=64, pattern=r"^[!-}]+$")]
_NESTED = ConfigDict(strict=True, extra="forbid")
# The keys allowed in each nested object, by the name of the field holding it, for hints.
_NESTED_KEYS: dict[str, tuple[str, ...]] = {}


def _shape(holder: str, fields: dict[str, Any], *, total: bool = True) -> Any:
    """A fixed JSON object shape, held by field ``holder``: strict types, unknown keys rejected."""
    _NESTED_KEYS[holder] = tuple(fields)
    return with_config(_NESTED)(TypedDict(holder, fields, total=total))  # type: ignore[operator]


_Watermark = _shape("watermark_info", {"enabled": bool})
_Voice = _shape("voice_list", {"voice_id": Annotated[str, StringConstraints(min_length=1)]})
_Point = _shape("trajectories", {"x": int, "y": int})
_Trajectory = Annotated[list[_Point], Field(min_length=2, max_length=77)]  # type: ignore[valid-type]
_DynamicMask = _shape("dynamic_masks", {"mask": _Image, "trajectories": _Trajectory})
_CameraConfig = _shape("config", dict.fromkeys(CAMERA_AXES, _Axis), total=False)
_CameraControl = _shape(
    "camera_control", {"type": _enum(*CAMERA_TYPES), "config": NotRequired[_CameraConfig]}
)

_FIELD_TYPES: dict[str, Any] = {
    "model_name": _enum(*MODEL_NAMES),
    "image": _Image,
    "image_tail": _Image,
    "prompt": _Prompt,
    "negative_prompt": _Prompt,
    "voice_list": Annotated[list[_Voice], Strict(), Field(max_length=2)],  # type: ignore[valid-type]
    "sound": _enum("on", "off"),
    "cfg_scale": Annotated[float, Strict(), _between(0, 1), _documented(minimum=0, maximum=1)],
    "mode": _enum("std", "pro"),
    "static_mask": _Image,
    "dynamic_masks": Annotated[list[_DynamicMask], Strict(), Field(max_length=6)],  # type: ignore[valid-type]
    "camera_control": _CameraControl,
    "aspect_ratio": _enum("16:9", "9:16", "1:1"),
    "duration": Annotated[_enum("5", "10"), BeforeValidator(_reject_number)],
    "watermark_info": _Watermark,
    "callback_url": _Url,
    "external_task_id": _TaskId,
}
KNOWN_FIELDS = frozenset(_FIELD_TYPES)
_ADAPTERS = {name: TypeAdapter(field_type) for name, field_type in _FIELD_TYPES.items()}
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


def _normalise(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def _close_matches(name: str, candidates: Iterable[str], cutoff: float) -> list[str]:
    """Known names resembling ``name``, best first, ignoring case, '_' and '-' (catches camelCase)."""
    by_normal, normal = {_normalise(candidate): candidate for candidate in candidates}, _normalise(name)
    if normal in by_normal:
        return [by_normal[normal]]
    matches = difflib.get_close_matches(normal, by_normal, n=2, cutoff=cutoff)
    return [by_normal[match] for match in matches]


def _unknown_message(name: str, candidates: Iterable[str], otherwise: str) -> str:
    hints = _close_matches(name, candidates, HINT_CUTOFF)
    if hints:
        return "unknown field; did you mean " + " or ".join(f"'{hint}'" for hint in hints) + "?"
    return f"unknown field; {otherwise}"


def _unknown_top_level(name: str, extra_fields: frozenset[str]) -> FieldProblem | None:
    if name in extra_fields:
        return None
    if "*" in extra_fields and not _close_matches(name, KNOWN_FIELDS, MISSPELLING_CUTOFF):
        return None
    otherwise = "a new Kling field can be let through with the KLING_EXTRA_FIELDS setting"
    return FieldProblem(name, "unknown_field", _unknown_message(name, KNOWN_FIELDS, otherwise))


def _path(loc: tuple[str | int, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else part
    return path


def _from_pydantic(field: str, error: ErrorDetails) -> FieldProblem:
    loc = (field, *error["loc"])
    mapped = _PYDANTIC_ERRORS.get(error["type"])
    if mapped is None:  # one of ours, raised as PydanticCustomError with our code as its type
        return FieldProblem(_path(loc), error["type"], error["msg"])
    code, message = mapped[0], mapped[1].format(**error.get("ctx", {}))
    if code == "unknown_field":
        parent = next(part for part in reversed(loc[:-1]) if isinstance(part, str))
        allowed = _NESTED_KEYS[parent]
        message = _unknown_message(str(loc[-1]), allowed, "allowed: " + ", ".join(allowed))
    elif code == "type" and error["input"] is None:
        message += ", not null (omit the field instead)"
    return FieldProblem(_path(loc), code, message)


def _camera_problems(camera: dict[str, Any]) -> list[FieldProblem]:
    """Rules across camera_control's fields, run once their types are known to be right."""
    path, has_config = "camera_control.config", "config" in camera
    if camera["type"] != "simple":
        return [FieldProblem(path, "requires", 'only allowed when type is "simple"')] if has_config else []
    if not has_config:
        return [FieldProblem(path, "missing", 'is required when type is "simple"')]
    moving = [axis for axis in CAMERA_AXES if camera["config"].get(axis, 0) != 0]
    if len(moving) == 1:
        return []
    message = f"exactly one of {', '.join(CAMERA_AXES)} must be non-zero; got {', '.join(moving) or 'none'}"
    return [FieldProblem(path, "too_many" if moving else "too_few", message)]


def _cross_field_problems(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    """Rules between fields: presence-based ones use ``body``, value-based ones only ``valid`` values."""
    problems = []
    used = ["/".join(present) for group in _EXCLUSIVE_GROUPS if (present := [f for f in group if f in body])]
    if len(used) > 1:
        groups = "image_tail (first + last frame), static_mask/dynamic_masks (motion brush), camera_control"
        problems.append(FieldProblem("", "exclusive", f"use at most one of {groups}; got {', '.join(used)}"))
    if "model_name" in valid or "model_name" not in body:
        model = valid.get("model_name", DEFAULT_MODEL)
        default = "" if "model_name" in body else " (the default when model_name is absent)"
        for name, models in _MODEL_ONLY.items():
            if name in body and model not in models:
                message = f"only supported by {', '.join(models)}, not {model}{default}"
                problems.append(FieldProblem(name, "not_supported_by_model", message))
    if "voice_list" in body and ("sound" in valid or "sound" not in body) and valid.get("sound") != "on":
        problems.append(FieldProblem("voice_list", "requires", 'requires sound set to "on"'))
    if "camera_control" in valid:
        problems += _camera_problems(valid["camera_control"])
    return problems


def validate_image2video(
    body: object, *, extra_fields: frozenset[str] | None = None, allowed_hosts: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Returns the body to forward upstream (the caller's fields and values, unchanged, without
    defaults), or raises RequestInvalid listing every problem found.

    ``extra_fields`` names unknown top-level fields to let through; ``"*"`` lets through any that is
    not a close misspelling of a known field (see the module docstring). ``allowed_hosts`` are the
    internal hosts a ``callback_url`` may name (``NOTIFY_ALLOWED_HOSTS``): the service would refuse to
    call any other internal address, so a request naming one is refused now, before a video is paid for.
    """
    if not isinstance(body, dict):
        raise RequestInvalid([FieldProblem("", "type", "request body must be a JSON object")])
    problems: list[FieldProblem] = []
    if "image" not in body:
        problems.append(FieldProblem("image", "missing", "is required"))
    valid: dict[str, Any] = {}
    for name, value in body.items():
        adapter = _ADAPTERS.get(name)
        if adapter is None:
            unknown = _unknown_top_level(str(name), extra_fields or frozenset())
            problems += [unknown] if unknown else []
            continue
        try:
            valid[name] = adapter.validate_python(value)
        except ValidationError as exc:
            problems += [_from_pydantic(name, error) for error in exc.errors()]
    problems += _cross_field_problems(body, valid)
    if "callback_url" in valid and (why := refusal_of_url(valid["callback_url"], allowed_hosts)):
        message = f"points at a {why} address, which the service never calls (see NOTIFY_ALLOWED_HOSTS)"
        problems.append(FieldProblem("callback_url", "blocked_address", message))
    if problems:
        raise RequestInvalid(problems)
    return dict(body)


def create_body_json_schema(
    extra_fields: frozenset[str] = frozenset(), ref_template: str = "#/$defs/{model}"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The create body as JSON Schema, built from the same types that validate it so the two never
    drift, and the nested shapes it refers to (through ``ref_template``).

    Rules across fields (at most one of image_tail, the masks or camera_control; fields only some models
    take; exactly one camera axis) have no JSON Schema form: validation still applies them.
    """
    definitions: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    for name, adapter in _ADAPTERS.items():
        schema = adapter.json_schema(ref_template=ref_template)
        definitions.update(schema.pop("$defs", {}))
        properties[name] = schema
    properties.update({name: {} for name in sorted(extra_fields - KNOWN_FIELDS - {"*"})})
    body = {
        "type": "object",
        "properties": properties,
        "required": ["image"],
        "additionalProperties": "*" in extra_fields,
    }
    return body, definitions
