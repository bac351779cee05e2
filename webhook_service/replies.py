"""Redis replies as the types the code uses, in one place.

The service's connections do not decode replies (RQ needs the bytes), yet redis-py types a reply as
`bytes | str`, since the same client may be built to decode. Every store reads replies through these
instead of repeating `.decode()` and its type noise.
"""

from __future__ import annotations

from collections.abc import Iterable


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def text_or_none(value: bytes | str | None) -> str | None:
    return None if value is None else text(value)


def texts(values: Iterable[bytes | str]) -> list[str]:
    return [text(value) for value in values]
