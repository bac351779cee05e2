"""What the service keeps of what others send it has a ceiling, so a year of tasks fits in Redis.

A callback or poll answer is kept in the task's history, where a reader wants its ids, status and
message: not the megabyte of padding a broken or hostile sender can put around them. A body whose JSON
is over STORED_BODY_MAX_BYTES is kept cut down to that size, still valid JSON, with the size and sha256
of the whole beside it:

    {"body": {...the part that fits...}, "body_truncated": true, "body_size": 1048000,
     "body_sha256": "<hex of the whole body as compact JSON>"}

Cutting keeps an object's small members first, in their order (its ids and status survive a huge
neighbour), a list's first items, and the start of a long string (ending in "…").

News the task already has (a duplicate or a stale callback, a poll that finds nothing new) keeps no
body at all: its entry has the body's size and sha256 instead (`repeat_entry`), enough to tell whether
a repeat said the same, and its `webhook-id` at most WEBHOOK_ID_MAX_CHARS printable ASCII characters.
Only the entries that changed the task carry a body, one per status step (four at most). So however
many repeats a leaked callback URL sends, they take at most HISTORY_LIMIT x REPEAT_ENTRY_MAX_BYTES
(250 KiB) of the task's history, which keeps its newest HISTORY_LIMIT entries.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

STORED_BODY_MAX_BYTES = 16 * 1024
HISTORY_LIMIT = 500  # entries a task's history keeps, the newest (domain/store.py trims it)
WEBHOOK_ID_MAX_CHARS = 64  # Standard Webhooks ids are `msg_` and some 27 characters
# A repeat's entry: its time, source, statuses, outcome, webhook-id, the body's size and sha256, and
# how many outputs and fields were dropped: under 400 bytes written out, whatever the body was.
REPEAT_ENTRY_MAX_BYTES = 512
# Kling's task ids a task answers to besides its own: a gateway forwarding our callback URL adds one.
UPSTREAM_IDS_MAX = 8
# The store writes JSON with ASCII escapes and ", " / ": " separators: at most three times the bytes
# of the JSON received (a 2-byte UTF-8 character becomes a 6-byte escape, a 4-byte one 12; a separator
# byte becomes two). A body received at a third of the cap fits without being measured, which spares
# almost every callback (Kling's are under a kilobyte) a second serialisation.
_SURELY_FITS_BYTES = STORED_BODY_MAX_BYTES // 3
_DROPPED = object()  # what a value that cannot fit at all is cut to
_ELLIPSIS = "…"


def stored_body(body: Any, *, received_bytes: int | None = None) -> dict[str, Any]:
    """The history's record of a body: whole when it is small enough, else cut down and described.
    `received_bytes`: the size of the JSON as it came, when known."""
    if received_bytes is not None and received_bytes <= _SURELY_FITS_BYTES:
        return {"body": body}
    size = _size(body)
    if size <= STORED_BODY_MAX_BYTES:
        return {"body": body}
    whole = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    kept = _cut(body, STORED_BODY_MAX_BYTES)
    return {
        "body": None if kept is _DROPPED else kept,
        "body_truncated": True,
        "body_size": len(whole),
        "body_sha256": hashlib.sha256(whole).hexdigest(),
    }


def _size(value: Any) -> int:
    """Bytes of `value` as the store writes it (json.dumps' defaults: ASCII, ", " and ": ")."""
    return len(json.dumps(value))


def _cut(value: Any, budget: int) -> Any:
    """`value` cut to at most `budget` bytes of JSON, or _DROPPED when nothing of it fits."""
    if _size(value) <= budget:
        return value
    if isinstance(value, str):
        return _cut_string(value, budget)
    if isinstance(value, list):
        return _cut_list(value, budget)
    if isinstance(value, dict):
        return _cut_object(value, budget)
    return _DROPPED  # a number that long cannot be shortened and stay the same number


def _cut_string(value: str, budget: int) -> Any:
    keep = min(len(value), budget)
    while keep > 0:
        cut = value[:keep] + _ELLIPSIS
        size = _size(cut)
        if size <= budget:
            return cut
        keep = keep * budget // size - 1  # escapes take up to 12 bytes a character: shrink and retry
    return _DROPPED


def _cut_list(value: list[Any], budget: int) -> list[Any]:
    kept: list[Any] = []
    used = 2  # []
    for item in value:
        separator = 2 if kept else 0  # ", "
        room = budget - used - separator
        item = _cut(item, room) if room > 0 else _DROPPED
        if item is _DROPPED:
            break
        kept.append(item)
        used += separator + _size(item)
    return kept


def _cut_object(value: dict[str, Any], budget: int) -> dict[str, Any]:
    """Small members first, in their order (ids and status come before a huge neighbour), then the
    others, in their order, cut to what room is left."""
    sizes = {key: _size(member) for key, member in value.items()}
    small = [key for key in value if sizes[key] <= budget // 16]
    kept: dict[str, Any] = {}
    used = 2  # {}
    for key in small + [key for key in value if sizes[key] > budget // 16]:
        overhead = _size(str(key)) + 2 + (2 if kept else 0)  # "key": and ", "
        room = budget - used - overhead
        member = _cut(value[key], room) if room > 0 else _DROPPED
        if member is _DROPPED:
            continue
        kept[key] = member
        used += overhead + _size(member)
    return {key: kept[key] for key in value if key in kept}


def repeat_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A history entry for news the task already had: its body replaced by the body's size and sha256
    (of the whole, as compact JSON), what was dropped from it by how much only."""
    if "body" not in entry and "fields_dropped" not in entry:
        return entry
    kept = {key: value for key, value in entry.items() if key not in ("body", "body_truncated")}
    if "body" in entry and not entry.get("body_truncated"):  # a cut one has them already
        whole = json.dumps(entry["body"], separators=(",", ":"), ensure_ascii=False).encode()
        kept["body_size"], kept["body_sha256"] = len(whole), hashlib.sha256(whole).hexdigest()
    if isinstance(dropped := entry.get("fields_dropped"), dict):
        kept["fields_dropped"] = {key: dropped.get(key) for key in ("count", "bytes")}
    return kept


def shown_webhook_id(webhook_id: str | None) -> str | None:
    """A callback's `webhook-id` as its history entry keeps it: printable ASCII, WEBHOOK_ID_MAX_CHARS
    at most (a header may be 8 KB of anything)."""
    if webhook_id is None:
        return None
    printable = "".join(c if " " <= c <= "~" else "?" for c in webhook_id[:WEBHOOK_ID_MAX_CHARS])
    return printable + ("…" if len(webhook_id) > WEBHOOK_ID_MAX_CHARS else "")
