"""Reliability tests run small in CI and at full scale with RELIABILITY_SCALE=full."""

from __future__ import annotations

import os

FULL = os.environ.get("RELIABILITY_SCALE", "").lower() == "full"


def scaled(ci: int, full: int) -> int:
    return full if FULL else ci
