"""How values look on the pages: times, ages, sizes, and a task's request with its images and audio.

Images in a request are an http(s) URL or an archived input (domain/inputs.py). An archived one is
shown as a thumbnail the dashboard serves from the archive. A URL is shown as a link only: loading it
would send the operator's browser to a host the client chose, telling it who opened the task and when.
No Base64 ever reaches a page: a request recorded before inputs were archived says only how big it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from webhook_service.domain.inputs import (
    IMAGE_FIELDS,
    NESTED_IMAGE_FIELDS,
    OBJECT_IMAGE_FIELDS,
    audio_slots,
    image_slots,
    reference,
)

FIRST_FIELDS = ("prompt", "negative_prompt", "model_name", "mode", "duration", "cfg_scale", *IMAGE_FIELDS)

# The dashboard's link to the request's n-th image (in image_slots order): the original or its thumbnail.
InputLink = Callable[[int, bool], str]
# The dashboard's link to the request's n-th audio (in audio_slots order), from the archive.
AudioLink = Callable[[int], str]


@dataclass(frozen=True)
class Image:
    """An image of the request: `src` is what an <img> can show (None when there is no picture)."""

    src: str | None
    url: str | None = None  # where the whole image is: the request's URL, or the archived file
    size: int | None = None  # bytes
    mime: str | None = None
    sha256: str | None = None  # set for an archived input


@dataclass(frozen=True)
class Audio:
    """An archived audio input of the request (lip-sync's), played from the archive."""

    url: str
    size: int | None
    mime: str | None
    sha256: str | None


@dataclass(frozen=True)
class Row:
    name: str
    kind: str  # text, image, masks, audio or json
    value: Any


def image(value: object, index: int, link: InputLink) -> Image:
    ref = reference(value)
    if ref is not None:
        original = link(index, False)
        src = link(index, True) if ref.get("content_type") else None
        return Image(src, original, ref.get("size"), ref.get("content_type"), ref.get("sha256"))
    text = str(value or "").strip()
    if text.startswith(("http://", "https://")):
        return Image(src=None, url=text)
    return Image(src=None, size=len(text.rstrip("=")) * 3 // 4)


def _without_images(value: Any) -> Any:
    """For JSON shown as text: any nested image becomes a short note, so no Base64 reaches the page, and
    an archived audio input a pointer to its own row, where it plays."""
    if reference(value) is not None:
        return "(archived audio: below)"
    if isinstance(value, dict):
        return {
            k: ("(image)" if k in NESTED_IMAGE_FIELDS.values() else _without_images(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_without_images(v) for v in value]
    return value


def request_rows(request: dict[str, Any], link: InputLink, audio_link: AudioLink) -> list[Row]:
    """The request's fields in a readable order: the prompt and images first, the rest as sent, then
    each archived audio input, to be played."""
    index = {slot.path: n for n, slot in enumerate(image_slots(request))}
    names = [n for n in FIRST_FIELDS if n in request] + [n for n in request if n not in FIRST_FIELDS]
    rows = []
    for name in names:
        value = request[name]
        if name in IMAGE_FIELDS:
            rows.append(Row(name, "image", image(value, index[name], link)))
        elif name == "dynamic_masks" and isinstance(value, list):
            masks = [
                (
                    image(m.get("mask"), index.get(f"dynamic_masks[{n}].mask", -1), link),
                    json.dumps(m.get("trajectories")),
                )
                for n, m in enumerate(value)
                if isinstance(m, dict)
            ]
            rows.append(Row(name, "masks", masks))
        elif name in NESTED_IMAGE_FIELDS and isinstance(value, list):  # subject_image_list: a row each
            key = NESTED_IMAGE_FIELDS[name]
            for n, item in enumerate(value):
                path = f"{name}[{n}].{key}"
                if isinstance(item, dict):
                    rows.append(Row(path, "image", image(item.get(key), index.get(path, -1), link)))
        elif name in OBJECT_IMAGE_FIELDS and isinstance(value, dict):  # a video effect's input
            rows += _object_rows(name, value, index, link)
        elif isinstance(value, dict | list):
            rows.append(Row(name, "json", json.dumps(_without_images(value), indent=2)))
        else:
            rows.append(Row(name, "text", str(value)))
    for n, slot in enumerate(audio_slots(request)):
        if (ref := reference(slot.value)) is not None:
            audio = Audio(audio_link(n), ref.get("size"), ref.get("content_type"), ref.get("sha256"))
            rows.append(Row(slot.path, "audio", audio))
    return rows


def _object_rows(name: str, value: dict[str, Any], index: dict[str, int], link: InputLink) -> list[Row]:
    """An object holding images (a video effect's `input`): a row per image, then one per other key."""
    key, list_key = OBJECT_IMAGE_FIELDS[name]
    slots = image_slots({name: value})
    rows = [Row(slot.path, "image", image(slot.value, index.get(slot.path, -1), link)) for slot in slots]
    for other, item in value.items():
        if other == key or (other == list_key and isinstance(item, list)) or reference(item) is not None:
            continue  # shown above, or an archived audio input: a row of its own, below
        shown = json.dumps(item) if isinstance(item, dict | list) else str(item)
        rows.append(Row(f"{name}.{other}", "text", shown))
    return rows


def clock(ms: int | None) -> str:
    if not ms:
        return "—"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def span(seconds: float) -> str:
    """A duration as a person says it: 850 ms, 4.2 s, 3 min, 5 h, 2 d."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def age(ms: int | None, now_ms: int) -> str:
    return "—" if not ms else f"{span(max(0, now_ms - ms) / 1000)} ago"


def filesize(size: int | None) -> str:
    if size is None:
        return "—"
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


_EVENT_LABELS = {
    "created": "Recorded",
    "create_failed": "Kling refused the task",
    "create_deferred": "Create deferred",
    "send_abandoned": "Send abandoned",
    "expired": "Expired",
    "archive_started": "Archive started",
    "archive_retry": "Archive retry",
    "video_archived": "Video archived",
    "image_archived": "Image archived",
    "archived": "Archived",
    "archive_failed": "Archive failed",
}
_SOURCE_LABELS = {"callback": "Callback", "poll": "Poll", "create": "Create answer"}
_SHOWN_APART = frozenset({"at", "event", "source", "status", "outcome", "reported_status"})


def history_label(entry: dict[str, Any]) -> str:
    """A history entry in words: which news it was (callback, poll, create answer) or what happened."""
    event = str(entry.get("event", ""))
    if event == "status":
        source = str(entry.get("source", ""))
        return f"{_SOURCE_LABELS.get(source, source.capitalize())}: {entry.get('reported_status', '?')}"
    return _EVENT_LABELS.get(event, event.replace("_", " ").capitalize())


def history_detail(entry: dict[str, Any]) -> dict[str, Any]:
    """What the entry holds beyond its time, label and statuses: the body, an error, a video."""
    return {k: v for k, v in entry.items() if k not in _SHOWN_APART and v is not None}


def pretty(value: Any) -> str:
    return json.dumps(_without_images(value), indent=2, ensure_ascii=False, sort_keys=False)
