"""The create bodies of Kling's unified API (``POST /text-to-video/kling-3.0``, ``POST
/image-to-video/kling-3.0``): the model in the path, the body nested in ``contents`` / ``settings`` /
``options`` (docs/kling-endpoints.md, "The unified API", names the sources and where they disagree).
domain/body_rules.py applies the field types; the rules across fields are here.

* Text to video: ``prompt`` is required, 1 to 3072 characters (Kling recommends 2500 at most).
* Image to video: ``contents`` is required, items ``{type: prompt, text}``, ``{type: first_frame | last_frame,
  url}`` and ``{type: element, element_id, id}``, each with its own keys only. One ``first_frame`` is
  required (a last frame alone is not supported), at most one ``last_frame``, at most 3 elements with
  distinct ``id`` s. Kling gives no count for prompts: one prompt item at most here, as a second would
  leave which text counts to chance. A frame is a URL or raw Base64 of at most 50 MB (not the /v1 API's
  10 MB); pixels and aspect left to Kling, which reads the image anyway.
* ``settings``: ``multi_shot`` boolean, ``audio`` native/off (``original``, a reference or motion
  video's sound, omni video's, O1's and motion control's, is refused here, as omni's item types are for
  image to video), ``resolution`` 720p/1080p/4k, ``duration`` an integer from 3 to 15 (a JSON number:
  the /v1 API's string ``"5"`` is refused with a message saying so), ``aspect_ratio`` 16:9/9:16/1:1
  for text to video only (for image to video the frame decides it); ``character_orientation``
  image/video is motion control's, refused on every other path (`unified_body`).
* ``contents`` items are one shape for every path (``type``, ``text``, ``url``, ``element_id``, ``id``,
  ``voice_id``); each path names the kinds it takes and their keys (`walk_items`), so an unknown key gets
  the same hint everywhere and a kind of another path is refused as such.
* Every path's body is made by `unified_body`, its rules written with the helpers here: `walk_items`,
  `too_many` and `needs_one` for its items, `settings_refused` and `settings_narrowed` for the settings
  it does not take or takes fewer values of (`FRAME_DECIDES_ASPECT`, `no_4k`: what several models share).
* ``options``: ``callback_url``, ``external_task_id`` and ``watermark_info``, each as in the /v1 API.
* A multi-shot prompt (one that starts ``shot 1, 3, ...``) is written ``shot n, m, words;``: 1 to 6
  shots numbered from 1, each of ``m`` >= 1 seconds, their seconds adding up to the video's duration
  (5 when absent), each shot's words at most 512 characters. Checked unless ``multi_shot`` is false
  (Kling then makes one shot of the text as it is).

The service keeps a unified body with its ``options`` at the top level, where a /v1 body has them
(`stored`), so recording a task is the same for both APIs; `upstream_body` puts them back, with the
service's own callback_url, when the task goes to Kling.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, NotRequired

from pydantic import AfterValidator, BeforeValidator, Field, Strict, StringConstraints, ValidationInfo
from pydantic_core import PydanticCustomError

from webhook_service.domain.body_limits import BodyLimit
from webhook_service.domain.body_rules import BodyRules, CrossFieldRule, validate_body
from webhook_service.domain.field_types import (
    NESTED_KEYS,
    TaskId,
    Url,
    VoiceId,
    Watermark,
    between,
    documented,
    enum,
    image_check,
    shape,
)
from webhook_service.domain.field_types import is_http_url as _is_http_url
from webhook_service.domain.problems import FieldProblem, RequestInvalid
from webhook_service.integrations.outbound import refusal_of_url

MODEL = "kling-3.0"
TEXT_TO_VIDEO_PATH = "/text-to-video/kling-3.0"
IMAGE_TO_VIDEO_PATH = "/image-to-video/kling-3.0"
TASKS_PATH = "/tasks"
PROMPT_MAX_CHARS = 3072
SHOT_MAX_CHARS = 512
MAX_SHOTS = 6
MAX_ELEMENTS = 3
MAX_FRAME_BYTES = 50 * 1024 * 1024
DEFAULT_DURATION = 5
MIN_SECONDS, MAX_SECONDS = 3, 15  # kling-3.0's durations, the unified settings' type
OPTIONS = ("callback_url", "external_task_id", "watermark_info")
# Every kind of `contents` item of the unified API, one item shape for all (as `settings` is one shape):
# each path takes some kinds and refuses the others (`walk_items`). Omni-video takes the first seven
# (domain/omni_rules.py), kling-2.6 image to video `voice` (domain/kling26_rules.py), motion control
# `image` and `video` (domain/motion_rules.py).
ALL_CONTENT_TYPES = (
    "prompt",
    "first_frame",
    "last_frame",
    "refer_image",
    "feature_video",
    "base_video",
    "element",
    "voice",
    "image",
    "video",
)
VIDEO_ITEMS = ("feature_video", "base_video", "video")  # their `url` is a video's: a URL only
ItemKeys = dict[str, tuple[tuple[str, ...], tuple[str, ...]]]
Narrowed = dict[str, tuple[tuple[Any, ...], str]]  # settings key -> (the values a path takes, why)
# The keys each kind of image-to-video `contents` item takes besides `type`: (required, optional).
_ITEM_KEYS: ItemKeys = {
    "prompt": (("text",), ()),
    "first_frame": (("url",), ()),
    "last_frame": (("url",), ()),
    "element": (("element_id", "id"), ()),
}


_check_frame = image_check(MAX_FRAME_BYTES, "50 MB")  # as the /v1 API's images, with 50 MB
# The largest bodies of the two (domain/body_limits.py): frames are their only large fields.
TEXT_TO_VIDEO_BODY = BodyLimit(0, MAX_FRAME_BYTES, "a kling-3.0 text-to-video", "")
IMAGE_TO_VIDEO_BODY = BodyLimit(2, MAX_FRAME_BYTES, "a kling-3.0 image-to-video", "first_frame, last_frame")


def _check_url(value: str, info: ValidationInfo) -> str:
    """An item's `url`: a video's is an http(s) URL (Kling takes no Base64 video), any other item's an
    image (`_check_frame`). The item's `type` is validated before its `url` (the shape's order)."""
    if info.data.get("type") not in VIDEO_ITEMS:
        return _check_frame(value)
    if not _is_http_url(value):
        raise PydanticCustomError("format", "must be an http or https URL: Kling takes a video by URL only")
    return value


def _not_a_string(value: object) -> object:
    if isinstance(value, str):
        raise PydanticCustomError("type", "must be an integer from 3 to 15 (a JSON number, not a string)")
    return value


Text = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=PROMPT_MAX_CHARS)]
Frame = Annotated[
    str,
    StringConstraints(strict=True, min_length=1),
    AfterValidator(_check_url),
    documented(
        description=(
            "An image: an http(s) URL, or raw Base64 (no data: prefix) of at most 50 MB. A video "
            f"({', '.join(VIDEO_ITEMS)}): an http(s) URL only."
        )
    ),
]
Name = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)]
Seconds = Annotated[
    int,
    BeforeValidator(_not_a_string),
    Strict(),
    between(MIN_SECONDS, MAX_SECONDS),
    documented(minimum=MIN_SECONDS, maximum=MAX_SECONDS),
]
Settings = shape(
    "settings",
    {
        "multi_shot": Annotated[bool, Strict()],
        "audio": enum("native", "original", "off"),  # original: a video's sound (omni, O1, motion control)
        "resolution": enum("720p", "1080p", "4k"),
        "aspect_ratio": enum("16:9", "9:16", "1:1"),
        "duration": Seconds,
        "character_orientation": enum("image", "video"),  # motion control's only
    },
    total=False,
)
Options = shape(
    "options", {"callback_url": Url, "external_task_id": TaskId, "watermark_info": Watermark}, total=False
)
Item = shape(
    "contents",
    {
        "type": enum(*ALL_CONTENT_TYPES),
        "text": NotRequired[Text],
        "url": NotRequired[Frame],
        "element_id": NotRequired[Name],
        "id": NotRequired[Name],
        "voice_id": NotRequired[VoiceId],
    },
)
Contents = Annotated[list[Item], Strict(), Field(min_length=1)]  # type: ignore[valid-type]

_COMMA, _SEMICOLON = ",\uff0c", ";\uff1b"  # Kling's Chinese page writes them full-width too
_SHOT = re.compile(
    rf"\s*(?:shot|\u955c\u5934)\s*(\d+)\s*[{_COMMA}]\s*(\d+)\s*[{_COMMA}]([^{_SEMICOLON}]*)[{_SEMICOLON}]",
    re.IGNORECASE,
)


def shot_problems(path: str, text: str, settings: dict[str, Any]) -> list[FieldProblem]:
    """A prompt written as shots (it starts `shot 1, 3,`): the shots' rules, or nothing for any other.
    `settings` as sent: one bad key fails the whole object's type, and must change nothing here; a
    duration that is not one of 3 to 15 is its type's problem, with no sum to match."""
    if settings.get("multi_shot") is False or not _SHOT.match(text):
        return []
    shots, position = [], 0
    while (found := _SHOT.match(text, position)) is not None:
        shots.append((int(found[1]), int(found[2]), found[3].strip()))
        position = found.end()
    form = "is a multi-shot prompt: write each shot as 'shot n, m, words;'"
    problems = [] if not text[position:].strip() else [FieldProblem(path, "format", form)]
    if len(shots) > MAX_SHOTS:
        problems.append(FieldProblem(path, "too_many", f"has {len(shots)} shots; at most {MAX_SHOTS}"))
    if [n for n, _, _ in shots] != list(range(1, len(shots) + 1)):
        problems.append(FieldProblem(path, "format", "numbers its shots 1, 2, 3, ... in order"))
    if any(m < 1 for _, m, _ in shots):
        problems.append(FieldProblem(path, "range", "gives every shot at least 1 second"))
    duration, total = settings.get("duration", DEFAULT_DURATION), sum(m for _, m, _ in shots)
    if type(duration) is int and MIN_SECONDS <= duration <= MAX_SECONDS and total != duration:
        message = f"gives its shots {total} seconds in all; they must add up to the duration, {duration}"
        problems.append(FieldProblem(path, "mismatch", message))
    for n, _, words in shots:
        if len(words) > SHOT_MAX_CHARS:
            message = f"shot {n}'s words must be at most {SHOT_MAX_CHARS} characters"
            problems.append(FieldProblem(path, "too_long", message))
    return problems


def unified_settings(body: dict[str, Any]) -> dict[str, Any]:
    """The `settings` of a body as sent, or of its values that passed their types (`valid`); {} when
    absent or not an object."""
    settings = body.get("settings")
    return settings if isinstance(settings, dict) else {}


def _item_problems(n: int, item: dict[str, Any], item_keys: ItemKeys, what: str) -> list[FieldProblem]:
    """An item's keys against its type's (required, optional) keys in `item_keys`, the kinds of the path
    `what` names. A key of no item shape is its type's problem (unknown, or let through by
    KLING_EXTRA_FIELDS' `contents.<key>`), not this."""
    kind, problems = item["type"], []
    required, optional = item_keys[kind]
    for key in required:
        if key not in item:
            problems.append(FieldProblem(f"contents[{n}].{key}", "missing", f"is required with type {kind}"))
    for key in item.keys() & set(NESTED_KEYS["contents"]) - {"type", *required, *optional}:
        owners = " or ".join(name for name, keys in item_keys.items() if key in keys[0] + keys[1])
        message = f"only with type {owners}" if owners else f"is not taken by any item of {what}"
        problems.append(FieldProblem(f"contents[{n}].{key}", "requires", message))
    return problems


def walk_items(
    contents: list[Any],
    item_keys: ItemKeys,
    what: str,
    *,
    prompt_max: int = PROMPT_MAX_CHARS,
) -> tuple[list[FieldProblem], dict[str, list[int]]]:
    """Each item's own problems, and where each kind a path takes (`item_keys`) is. The raw items, not
    only those that passed their types: one bad item hides no other problem. A kind the path does not
    take is refused naming those it takes; an `id` (what the prompt names an item by) is used once; a
    prompt's text is at most `prompt_max` characters (its type already refuses more than the unified
    API's 3072). A `url` is its type's (`Frame`: a video's a URL only, an image's a URL or Base64)."""
    problems: list[FieldProblem] = []
    seen: dict[str, list[int]] = {kind: [] for kind in item_keys}
    ids: set[str] = set()
    for n, item in enumerate(contents):
        if not isinstance(item, dict) or item.get("type") not in ALL_CONTENT_TYPES:
            continue  # its type's problem is reported already
        kind = item["type"]
        if kind not in item_keys:
            message = f"{what} takes {', '.join(item_keys)} only"
            problems.append(FieldProblem(f"contents[{n}].type", "not_supported", message))
            continue
        seen[kind].append(n)
        problems += _item_problems(n, item, item_keys, what)
        text, name = item.get("text"), item.get("id")
        if kind == "prompt" and isinstance(text, str) and prompt_max < len(text) <= PROMPT_MAX_CHARS:
            message = f"must be at most {prompt_max} characters"
            problems.append(FieldProblem(f"contents[{n}].text", "too_long", message))
        if isinstance(name, str):
            if name in ids:
                problems.append(FieldProblem(f"contents[{n}].id", "duplicate", "is used by another item"))
            ids.add(name)
    return problems, seen


def too_many(seen: dict[str, list[int]], most: dict[str, int]) -> list[FieldProblem]:
    """The items past the most of each kind (`most`: kind -> count)."""
    return [
        FieldProblem(f"contents[{n}]", "too_many", f"at most {count} of type {kind}")
        for kind, count in most.items()
        for n in seen[kind][count:]
    ]


def needs_one(seen: dict[str, list[int]], kind: str, what: str = "") -> list[FieldProblem]:
    """A kind of item a path requires (`what`: what it is to the video), absent from `contents`."""
    return [] if seen[kind] else [FieldProblem("contents", "missing", f"needs one item of type {kind}{what}")]


def settings_narrowed(valid: dict[str, Any], taken: Narrowed) -> list[FieldProblem]:
    """A path's narrower values of the unified settings (`taken`: key -> (its values, why)): another
    value of the shape's is refused (not_supported) with why, as a value the shape lacks is (enum)."""
    settings = unified_settings(valid)
    return [
        FieldProblem(f"settings.{key}", "not_supported", why)
        for key, (values, why) in taken.items()
        if key in settings and settings[key] not in values
    ]


def settings_refused(valid: dict[str, Any], refused: dict[str, str]) -> list[FieldProblem]:
    """The settings a path does not take at all (`refused`: key -> why): narrowed to no value."""
    return settings_narrowed(valid, {key: ((), why) for key, why in refused.items()})


# What several paths refuse or narrow alike, for settings_refused and settings_narrowed.
FRAME_DECIDES_ASPECT = {
    "aspect_ratio": "not taken by image to video: the first frame decides the aspect ratio"
}
_ORIGINAL = (
    "keeps a reference or motion video's sound: omni video's, O1's and motion control's (native or off here)"
)
NO_ORIGINAL_AUDIO: Narrowed = {"audio": (("native", "off"), _ORIGINAL)}


def no_4k(model: str) -> Narrowed:
    """kling-3.0's 4k, refused for a model that makes 720p or 1080p only."""
    return {"resolution": (("720p", "1080p"), f"{model} makes 720p or 1080p videos (4k is kling-3.0's)")}


def _no_character_orientation(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    """`settings.character_orientation` is motion control's: every other unified path refuses it."""
    message = "is motion control's (which way its character faces): not taken here"
    return settings_refused(valid, {"character_orientation": message})


def _text_to_video(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    prompt = valid.get("prompt")
    problems = settings_narrowed(valid, NO_ORIGINAL_AUDIO)
    if isinstance(prompt, str):
        problems += shot_problems("prompt", prompt, unified_settings(body))
    return problems


def _image_to_video(body: dict[str, Any], valid: dict[str, Any]) -> list[FieldProblem]:
    problems = settings_narrowed(valid, NO_ORIGINAL_AUDIO) + settings_refused(valid, FRAME_DECIDES_ASPECT)
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return problems  # its type's problem is reported already
    found, seen = walk_items(contents, _ITEM_KEYS, "image to video")
    problems += found
    for n in seen["prompt"]:
        if isinstance(text := contents[n].get("text"), str):
            problems += shot_problems(f"contents[{n}].text", text, unified_settings(body))
    most = {"first_frame": 1, "last_frame": 1, "prompt": 1, "element": MAX_ELEMENTS}
    return problems + needs_one(seen, "first_frame") + too_many(seen, most)


def unified_body(
    model: str, description: str, rule: CrossFieldRule, prompt: Any = None, *, orientation: bool = False
) -> BodyRules:
    """A unified create body: a `prompt` of the type `prompt` (text to video) or else `contents` items,
    with `settings`, `options` and the path's `rule` across them; `character_orientation` refused
    unless the path takes it (`orientation`: motion control's)."""
    first = {"prompt": prompt} if prompt is not None else {"contents": Contents}
    return BodyRules(
        field_types={**first, "settings": Settings, "options": Options},
        required=tuple(first),
        default_model=model,
        description=description,
        cross_field=(rule,) if orientation else (rule, _no_character_orientation),
    )


TEXT_TO_VIDEO = unified_body(
    MODEL,
    "Kling's unified text-to-video create body (kling-3.0). A prompt written as shots ('shot n, m, "
    "words;') has 1 to 6 shots numbered from 1, each >= 1 s, adding up to settings.duration.",
    _text_to_video,
    prompt=Text,
)
IMAGE_TO_VIDEO = unified_body(
    MODEL,
    "Kling's unified image-to-video create body (kling-3.0). contents: one first_frame {url}, at most "
    "one last_frame {url} and one prompt {text}, at most 3 elements {element_id, id}; no "
    "settings.aspect_ratio (the first frame decides it).",
    _image_to_video,
)


def validate(
    rules: BodyRules, body: object, *, extra_fields: frozenset[str] | None, allowed_hosts: frozenset[str]
) -> dict[str, Any]:
    """The body as recorded (`stored`), or RequestInvalid listing every problem: body_rules' and a
    callback_url naming an address the service never calls, as for a /v1 body's."""
    problems: list[FieldProblem] = []
    clean: dict[str, Any] = {}
    try:
        clean = validate_body(rules, body, extra_fields=extra_fields, allowed_hosts=allowed_hosts)
    except RequestInvalid as invalid:
        problems = list(invalid.problems)
    options = body.get("options") if isinstance(body, dict) else None
    url = options.get("callback_url") if isinstance(options, dict) else None
    if isinstance(url, str) and _is_http_url(url) and (why := refusal_of_url(url, allowed_hosts)):
        message = f"points at a {why} address, which the service never calls (see NOTIFY_ALLOWED_HOSTS)"
        problems.append(FieldProblem("options.callback_url", "blocked_address", message))
    if problems:
        raise RequestInvalid(problems)
    return stored(clean)


def stored(body: dict[str, Any]) -> dict[str, Any]:
    """The body as the service records it: the known `options` at the top level, as in a /v1 body; an
    option KLING_EXTRA_FIELDS let through (`options.<key>`) stays in `options`, to go back there."""
    options = dict(body.get("options") or {})
    lifted = {key: options.pop(key) for key in OPTIONS if key in options}
    rest = {k: v for k, v in body.items() if k != "options"}
    return {**rest, **({"options": options} if options else {}), **lifted}


def upstream_body(request: dict[str, Any], callback_url: str) -> dict[str, Any]:
    """The body Kling receives: the recorded one with its options back in `options`, the service's
    callback_url and its own external_task_id among them."""
    options = {**(request.get("options") or {}), **{key: request[key] for key in OPTIONS if key in request}}
    body = {k: v for k, v in request.items() if k not in OPTIONS and k != "options"}
    return {**body, "options": {**options, "callback_url": callback_url}}
