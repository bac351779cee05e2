"""Notifications: fan an event out to every sink that wants it, one delivery job per (event, sink)."""

from __future__ import annotations


def fan_out(event_id: str, external_task_id: str, event_type: str) -> None:
    """Build the event's payload once and queue its deliveries (the notifications feature fills this in)."""
