"""How values look on the pages: times, ages, sizes, and a task's request with its images as images.

Images in a request are an http(s) URL or raw Base64 (up to 10 MB). Base64 is shown as the picture
(a `data:` URI whose type is read from the image's first bytes), never as text nobody can read.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

IMAGE_FIELDS = ("image", "image_tail", "static_mask")
FIRST_FIELDS = ("prompt", "negative_prompt", "model_name", "mode", "duration", "cfg_scale", *IMAGE_FIELDS)
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


@dataclass(frozen=True)
class Image:
    """An image of the request: `src` is what an <img> can show (None when its type is unknown)."""

    src: str | None
    url: str | None = None  # set when the request gave a URL
    size: int | None = None  # decoded bytes, for Base64
    mime: str | None = None


@dataclass(frozen=True)
class Row:
    name: str
    kind: str  # text, image, masks or json
    value: Any


def sniff_mime(head: bytes) -> str | None:
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def image(value: object) -> Image:
    text = str(value or "").strip()
    if text.startswith(("http://", "https://")):
        return Image(src=text, url=text)
    if text.startswith("data:image/"):
        return Image(src=text, mime=text[5 : text.find(";")] if ";" in text else None)
    compact = "".join(text[:64].split())
    try:
        head = base64.b64decode(compact[: len(compact) // 4 * 4])
    except (binascii.Error, ValueError):
        head = b""
    mime = sniff_mime(head)
    size = len(text.rstrip("=")) * 3 // 4
    return Image(src=f"data:{mime};base64,{text}" if mime else None, size=size, mime=mime)


def _without_images(value: Any) -> Any:
    """For JSON shown as text: any nested image becomes a short note, so no Base64 reaches the page."""
    if isinstance(value, dict):
        return {k: ("(image)" if k == "mask" else _without_images(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_images(v) for v in value]
    return value


def request_rows(request: dict[str, Any]) -> list[Row]:
    """The request's fields in a readable order: the prompt and images first, the rest as sent."""
    names = [n for n in FIRST_FIELDS if n in request] + [n for n in request if n not in FIRST_FIELDS]
    rows = []
    for name in names:
        value = request[name]
        if name in IMAGE_FIELDS:
            rows.append(Row(name, "image", image(value)))
        elif name == "dynamic_masks" and isinstance(value, list):
            masks = [
                (image(m.get("mask")), json.dumps(m.get("trajectories")))
                for m in value
                if isinstance(m, dict)
            ]
            rows.append(Row(name, "masks", masks))
        elif isinstance(value, dict | list):
            rows.append(Row(name, "json", json.dumps(_without_images(value), indent=2)))
        else:
            rows.append(Row(name, "text", str(value)))
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


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


_EVENT_LABELS = {
    "created": "Recorded",
    "create_failed": "Kling refused the task",
    "create_deferred": "Create deferred",
    "send_abandoned": "Send abandoned",
    "expired": "Expired",
    "archive_started": "Archive started",
    "archive_retry": "Archive retry",
    "video_archived": "Video archived",
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
