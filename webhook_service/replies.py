"""Redis replies as the types the code uses, and JSON as Redis keeps it, in one place.

The service's connections do not decode replies (RQ needs the bytes), yet redis-py types a reply as
`bytes | str`, since the same client may be built to decode. Every store reads replies through these
instead of repeating `.decode()` and its type noise.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


def text(value: object) -> str:
    """A reply that is a string (a key, a member, a value), as `str`."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a string reply from Redis, got {type(value).__name__}")


def text_or_none(value: object) -> str | None:
    return None if value is None else text(value)


def texts(values: Iterable[object]) -> list[str]:
    """A list reply (members of a set or sorted set, without scores), as `str`s."""
    return [text(value) for value in values]


def hash_fields(value: object) -> dict[str, str]:
    """A hash reply (HGETALL, or CONFIG GET's names and values), as `str` names to `str` values."""
    if not isinstance(value, dict):
        raise TypeError(f"expected a hash reply from Redis, got {type(value).__name__}")
    return {text(name): text(field) for name, field in value.items()}


def scored(values: Iterable[object]) -> list[tuple[str, float]]:
    """A sorted-set reply with scores (`withscores=True`), as (member, score) pairs."""
    pairs = []
    for value in values:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(f"expected (member, score) pairs from Redis, got {type(value).__name__}")
        pairs.append((text(value[0]), float(value[1])))
    return pairs


def entries(values: object) -> list[tuple[str, dict[str, str]]]:
    """A stream's entries (XRANGE), as (entry id, fields) pairs of `str`."""
    found = []
    for value in values if isinstance(values, list) else []:
        entry_id, fields = value
        found.append((text(entry_id), hash_fields(fields or {})))
    return found


def stored_json(value: Any) -> str:
    """JSON as the service keeps it in Redis: without the spaces `json.dumps` puts after every `,` and
    `:`, some 5 % of a task's records, for values kept a whole retention."""
    return json.dumps(value, separators=(",", ":"))
