"""Time as the service records it (epoch milliseconds), and times as operators write them."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_duration(value: str) -> float:
    """Seconds from a duration as operators write it (`0s`, `90s`, `30m`, `24h`, `1d`, `1w`). Raises
    ValueError with a message fit for the user."""
    match = _DURATION.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"expected a duration like 0s, 30m, 24h, 7d; got {value!r}")
    seconds = float(match[1]) * _UNIT_S[match[2]]
    if seconds == float("inf"):
        raise ValueError(f"the duration {value!r} is too long")
    return seconds


def parse_since(value: str) -> int:
    """Epoch milliseconds from an ISO 8601 time (UTC unless it says otherwise) or a duration back from now
    (`90s`, `30m`, `2h`, `1d`, `1w`). Raises ValueError with a message fit for the user."""
    value = value.strip()
    if match := _DURATION.fullmatch(value):
        try:
            return now_ms() - round(float(match[1]) * _UNIT_S[match[2]] * 1000)
        except OverflowError:  # a duration of hundreds of digits is infinite as a float
            raise ValueError(f"the duration {value!r} is too long") from None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected an ISO 8601 time or a duration like 30m, 2h, 1d; got {value!r}") from None
    return round((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)
