"""What the service keeps of a piece of Kling's news: the fields Kling documents, each of a bounded size.

A task's result is copied into its record, into every event about it, its metadata.json and its page,
for as long as the task is kept; whoever holds a task's callback URL can put anything there. So of
`task_result` only what Kling documents is kept: the list `videos`, each video's `id`, `url`,
`watermark_url` and `duration`, and the list `images`, each image's `index`, `url` and `watermark_url`
(the unified API's `outputs` are read into the same two lists, domain/tasks.py). Every other key, at any
depth, is dropped, and so is an item of those lists that is not an object. A kept field is a string or a
number no longer than its cap:

    url, watermark_url   URL_MAX_CHARS (4,096): twice the 2,048 characters most software promises a URL
                         (and the cap on an endpoint's URL, notify/endpoint_fields.py); Kling's own are
                         about 150, a presigned CDN URL with a session token under 2,500
    id                   ID_MAX_CHARS (128): as a video-extend request's video_id, the longest the
                         service keys an index by (domain/video_extend_rules.py)
    duration, index      SHORT_MAX_CHARS (32): a number of seconds, an image's number

A field over its cap is dropped, never cut: a cut URL or id names something else. The same caps hold
for the rest of the news a task keeps: Kling's task_id (ID_MAX_CHARS), `final_unit_deduction`
(SHORT_MAX_CHARS), a video-extend task's `parent_video` (its `id`, `url`, `duration`; without a kept
`id` it is dropped whole) and the upstream times (milliseconds within 0..2^53).

What was dropped is named in the task's history, as outputs over CALLBACK_MAX_OUTPUTS are
(`outputs_dropped`), itself bounded:

    "fields_dropped": {"count": 2, "bytes": 800034, "names": ["task_result.padding",
                       "task_result.videos[0].url"]}

`bytes` is the size of the dropped values as compact UTF-8 JSON; `names` lists the first NAMES_LISTED,
each cut to NAME_MAX_CHARS.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

URL_MAX_CHARS = 4096
ID_MAX_CHARS = 128
SHORT_MAX_CHARS = 32
TIME_MAX_MS = 2**53  # a millisecond time past this is no time; JSON numbers stay exact below it
NAMES_LISTED = 16
NAME_MAX_CHARS = 64

_VIDEO_FIELDS = {
    "id": ID_MAX_CHARS,
    "url": URL_MAX_CHARS,
    "watermark_url": URL_MAX_CHARS,
    "duration": SHORT_MAX_CHARS,
}
_IMAGE_FIELDS = {"index": SHORT_MAX_CHARS, "url": URL_MAX_CHARS, "watermark_url": URL_MAX_CHARS}
# task_result's lists, and the fields each of their items keeps with its cap
RESULT_LISTS = {"videos": _VIDEO_FIELDS, "images": _IMAGE_FIELDS}
PARENT_VIDEO_FIELDS = {"id": ID_MAX_CHARS, "url": URL_MAX_CHARS, "duration": SHORT_MAX_CHARS}


class News(Protocol):
    """The fields of domain/tasks.py's StatusUpdate this module bounds (named here, not imported: a
    task's record must load without this module's callers)."""

    task_id: str | None
    task_result: dict[str, Any] | None
    final_unit_deduction: str | None
    upstream_created_at: int | None
    upstream_updated_at: int | None
    parent_video: dict[str, str] | None
    fields_dropped: dict[str, Any] | None


@dataclass
class Dropped:
    """What was left out, as the history records it."""

    names: list[str] = field(default_factory=list)
    count: int = 0
    bytes: int = 0

    def add(self, name: str, value: Any) -> None:
        self.count += 1
        self.bytes += len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if len(self.names) < NAMES_LISTED:
            self.names.append(name if len(name) <= NAME_MAX_CHARS else name[:NAME_MAX_CHARS] + "…")

    def record(self) -> dict[str, Any] | None:
        return {"count": self.count, "bytes": self.bytes, "names": self.names} if self.count else None


def bound(news: News) -> None:
    """Keep of `news`, in place, what Kling documents within its caps; name the rest in
    `fields_dropped`. Running it again changes nothing (what is kept is within bounds)."""
    if news.fields_dropped is not None:
        return
    dropped = Dropped()
    news.task_result = kept_result(news.task_result, dropped)
    news.parent_video = _kept_parent_video(news.parent_video, dropped)
    if news.task_id is not None and len(news.task_id) > ID_MAX_CHARS:
        dropped.add("task_id", news.task_id)
        news.task_id = None
    units = news.final_unit_deduction
    if units is not None and len(units) > SHORT_MAX_CHARS:
        dropped.add("final_unit_deduction", units)
        news.final_unit_deduction = None
    if news.upstream_created_at is not None and not 0 <= news.upstream_created_at <= TIME_MAX_MS:
        dropped.add("created_at", news.upstream_created_at)
        news.upstream_created_at = None
    if news.upstream_updated_at is not None and not 0 <= news.upstream_updated_at <= TIME_MAX_MS:
        dropped.add("updated_at", news.upstream_updated_at)
        news.upstream_updated_at = None
    news.fields_dropped = dropped.record()


def kept_result(result: dict[str, Any] | None, dropped: Dropped) -> dict[str, Any] | None:
    """`task_result` with only Kling's lists and fields, each within its cap."""
    if result is None:
        return None
    kept: dict[str, Any] = {}
    for key, value in result.items():
        fields = RESULT_LISTS.get(key)
        if fields is None or not isinstance(value, list):
            dropped.add(f"task_result.{key}", value)
            continue
        items = []
        for n, item in enumerate(value):
            if isinstance(item, dict):
                items.append(_kept_fields(item, fields, f"task_result.{key}[{n}]", dropped))
            else:
                dropped.add(f"task_result.{key}[{n}]", item)
        kept[key] = items
    return kept


def _kept_parent_video(value: dict[str, str] | None, dropped: Dropped) -> dict[str, str] | None:
    if value is None:
        return None
    kept = _kept_fields(value, PARENT_VIDEO_FIELDS, "task_info.parent_video", dropped)
    return kept if "id" in kept else None


def _kept_fields(
    item: dict[str, Any], fields: dict[str, int], where: str, dropped: Dropped
) -> dict[str, Any]:
    kept = {}
    for key, value in item.items():
        if value is None:
            continue  # an absent field, however it is spelled
        cap = fields.get(key)
        if cap is not None and _within(value, cap):
            kept[key] = value
        else:
            dropped.add(f"{where}.{key}", value)
    return kept


def _within(value: Any, cap: int) -> bool:
    """A string, or a finite number (not a boolean), of at most `cap` characters."""
    if isinstance(value, str):
        return len(value) <= cap
    if isinstance(value, int | float) and not isinstance(value, bool):
        return math.isfinite(value) and len(json.dumps(value)) <= cap
    return False
