"""The field types Kling's create bodies share (prompts, URLs, ids, camera moves, images), each a
pydantic type carrying both its check and its JSON Schema, so every task type's body is validated and
documented from the same definitions (domain/body_rules.py applies them).

Decisions where Kling's documentation leaves room (the same for every /v1 type; the unified API's
types take an integer ``duration`` and images of up to 50 MB, domain/unified_rules.py):

* ``duration`` must be the string ``"5"`` or ``"10"``, as Kling documents it; the integers 5 and 10
  are rejected with a message saying so, since converting them would silently rewrite the request.
* ``camera_control.config`` is required when ``type`` is ``"simple"`` (a simple move without axes
  means nothing) and refused with every other type.
* ``external_task_id`` is 1 to 64 printable ASCII characters without whitespace or ``~`` (which the
  service reserves to keep tenants' ids apart upstream, domain/tenants.py): the task is stored
  and queried (in a URL path) under it, where spaces and non-ASCII text invite mistakes.
* Images are an http(s) URL, never fetched here, or raw Base64 decoding to at most 10 MB. Pixel size,
  aspect ratio and file type are left to Kling, which reads the image anyway.
"""

import base64
import binascii
from collections.abc import Callable
from typing import Annotated, Any, NotRequired
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    with_config,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from webhook_service.domain.problems import FieldProblem

CAMERA_TYPES = ("simple", "down_back", "forward_up", "right_turn_forward", "left_turn_forward")
CAMERA_AXES = ("horizontal", "vertical", "pan", "tilt", "roll", "zoom")
MAX_IMAGE_BYTES = 10 * 1024 * 1024
PROMPT_MAX_CHARS = 2500
# Voices of Kling's voice library a video speaks with, at most 2 a task: /v1 image2video's `voice_list`
# and the unified kling-2.6 image to video's `voice` items take the same ids and count.
MAX_VOICES = 2


def rule(code: str, message: str, holds: Callable[[Any], bool]) -> AfterValidator:
    """A check reported under our own code and message rather than a pydantic error type."""

    def check(value: Any) -> Any:
        if not holds(value):
            raise PydanticCustomError(code, message)
        return value

    return AfterValidator(check)


def documented(**schema: Any) -> Any:
    """JSON Schema keywords for the OpenAPI document only: validation is the rules beside them."""
    return Field(json_schema_extra=schema)


def enum(*allowed: str) -> Any:
    """A string enum whose error lists the allowed values plainly (unlike pydantic's Literal)."""
    return Annotated[
        str,
        Strict(),
        rule("enum", f"must be one of: {', '.join(allowed)}", allowed.__contains__),
        documented(enum=list(allowed)),
    ]


def between(low: float, high: float) -> AfterValidator:
    """A closed range, written so that NaN and infinities (which json.loads accepts) fail it too."""
    return rule("range", f"must be between {low} and {high}", lambda value: low <= value <= high)


def is_http_url(value: str) -> bool:
    """An http(s) URL with a host, and a port in range if it has one (urllib only checks it when read)."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  # raises ValueError for a port out of 0-65535, or not a number
    except ValueError:  # e.g. a malformed IPv6 host
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def image_check(max_bytes: int, limit: str) -> Callable[[str], str]:
    """Kling takes an image as a URL or raw Base64 (a Base64 string never contains ':', so a colon
    means URL) of at most `max_bytes` decoded: 10 MB in the /v1 API, 50 MB in the unified one."""

    def check(value: str) -> str:
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
        if size > max_bytes:
            raise PydanticCustomError("too_large", f"decodes to more than {limit}, Kling's limit")
        return value

    return check


_check_image = image_check(MAX_IMAGE_BYTES, "10 MB")


def _reject_number(value: object) -> object:
    """Gives integer durations a clearer message than a bare type error."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise PydanticCustomError("type", 'must be the string "5" or "10", not a number')
    return value


# What _check_image accepts, as JSON Schema patterns for the OpenAPI document (a subset of URLs: a
# generator finds valid ones with it). "$(?!\n)": in Python, "$" also matches before a final newline.
_URL_PATTERN = r"^[hH][tT][tT][pP][sS]?://[A-Za-z0-9.-]+(:[0-9]{1,5})?([/?#][!-~]*)?$(?!\n)"
_BASE64_PATTERN = r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$(?!\n)"
Image = Annotated[
    str,
    StringConstraints(strict=True, min_length=1),
    AfterValidator(_check_image),
    documented(
        description="An http(s) URL, or raw Base64 (no data: prefix) of at most 10 MB.",
        anyOf=[{"pattern": _URL_PATTERN}, {"pattern": _BASE64_PATTERN}],
    ),
]
Prompt = Annotated[str, StringConstraints(strict=True, max_length=PROMPT_MAX_CHARS)]
Axis = Annotated[float, between(-10, 10), documented(minimum=-10, maximum=10)]
Url = Annotated[
    str,
    Strict(),
    rule("format", "must be an http or https URL with a host", is_http_url),
    documented(pattern=_URL_PATTERN),
]
# Printable ASCII ("!" to "}") without whitespace; "~" is reserved (domain/tenants.py: it keeps tenants'
# ids apart upstream).
TaskId = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=64, pattern=r"^[!-}]+$")]
VoiceId = Annotated[str, StringConstraints(strict=True, min_length=1)]
CfgScale = Annotated[float, Strict(), between(0, 1), documented(minimum=0, maximum=1)]
Duration: Any = Annotated[enum("5", "10"), BeforeValidator(_reject_number)]
_NESTED = ConfigDict(strict=True, extra="forbid")
# The keys allowed in each nested object, by the name of the field holding it, for hints.
NESTED_KEYS: dict[str, tuple[str, ...]] = {}


def shape(holder: str, fields: dict[str, Any], *, total: bool = True) -> Any:
    """A fixed JSON object shape, held by field ``holder``: strict types, unknown keys rejected."""
    NESTED_KEYS[holder] = tuple(fields)
    return with_config(_NESTED)(TypedDict(holder, fields, total=total))  # type: ignore[operator]


def image_objects(holder: str, key: str, max_items: int) -> Any:
    """A list of 1 to `max_items` images held by field `holder`, each in Kling's form, an object
    ``{key: <image>}``: a bare string (one gateway's form) is refused with that form in the message."""

    def not_a_bare_image(value: object) -> object:
        if isinstance(value, str):
            message = f'must be an object with "{key}" (a URL or Base64), not a string'
            raise PydanticCustomError("type", message)
        return value

    item = Annotated[shape(holder, {key: Image}), BeforeValidator(not_a_bare_image)]  # type: ignore[valid-type]
    return Annotated[list[item], Strict(), Field(min_length=1, max_length=max_items)]  # type: ignore[valid-type]


Watermark = shape("watermark_info", {"enabled": bool})
_CameraConfig = shape("config", dict.fromkeys(CAMERA_AXES, Axis), total=False)
CameraControl = shape("camera_control", {"type": enum(*CAMERA_TYPES), "config": NotRequired[_CameraConfig]})

# The fields every task type's create body takes, with the same meaning and rules.
COMMON_FIELDS: dict[str, Any] = {
    "watermark_info": Watermark,
    "callback_url": Url,
    "external_task_id": TaskId,
}


def camera_problems(camera: dict[str, Any]) -> list[FieldProblem]:
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
