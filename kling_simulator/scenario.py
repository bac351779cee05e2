"""Scenarios: what the simulator does with a task (status timeline, callback quirks, create errors).

A scenario is a plain dict so it can travel through the control HTTP API as JSON; it is parsed here into
frozen dataclasses so mistakes (unknown keys, bad types) are reported when the scenario is set, not later
on a scheduler thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from standardwebhooks import Webhook

STATUSES = ("processing", "succeed", "failed")
TERMINAL = ("succeed", "failed")
SHAPES = ("legacy", "new")

DEFAULT_SCENARIO: dict[str, Any] = {
    "steps": [{"status": "processing", "delay": 0.2}, {"status": "succeed", "delay": 0.5}],
}

_SCENARIO_KEYS = {
    "steps",
    "shape",
    "webhook_secret",
    "before_response",
    "create_error",
    "videos",
    "video_files",
    "max_open",
}
_STEP_KEYS = {"status", "delay", "send", "copies", "message"}
_ERROR_KEYS = {"http", "code", "message", "after_create"}


@dataclass(frozen=True)
class Step:
    """One status change: visible to queries `delay` seconds after create, and then called back."""

    status: str
    delay: float
    send: bool = True
    copies: int = 1
    message: str = ""


@dataclass(frozen=True)
class CreateError:
    """An error answered to the create request; `after_create` still creates the task behind it."""

    http: int = 500
    code: int = 5000
    message: str = "Internal server error"
    after_create: bool = False


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario; see DEFAULT_SCENARIO and the package docstring for the dict form."""

    steps: tuple[Step, ...]
    shape: str = "legacy"
    webhook_secret: str | None = None
    before_response: bool = False
    create_error: CreateError | None = None
    videos: int = 1
    video_files: tuple[str, ...] = ()
    max_open: int | None = None


def _check_keys(where: str, data: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be an object")
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    return data


def _typed(where: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    # bool is an int subclass: refuse it where a number is expected.
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise ValueError(f"{where}: wrong type {type(value).__name__}")
    return value


def _parse_step(index: int, data: Any) -> Step:
    where = f"steps[{index}]"
    step = _check_keys(where, data, _STEP_KEYS)
    status = step.get("status")
    if status not in STATUSES:
        raise ValueError(f"{where}.status must be one of {STATUSES}")
    delay = float(_typed(f"{where}.delay", step.get("delay", 0), (int, float)))
    copies = _typed(f"{where}.copies", step.get("copies", 1), int)
    if delay < 0 or copies < 0:
        raise ValueError(f"{where}: delay and copies must not be negative")
    return Step(
        status=status,
        delay=delay,
        send=_typed(f"{where}.send", step.get("send", True), bool),
        copies=copies,
        message=_typed(f"{where}.message", step.get("message", ""), str),
    )


def _parse_error(data: Any) -> CreateError:
    error = _check_keys("create_error", data, _ERROR_KEYS)
    return CreateError(
        http=_typed("create_error.http", error.get("http", 500), int),
        code=_typed("create_error.code", error.get("code", 5000), int),
        message=_typed("create_error.message", error.get("message", "Internal server error"), str),
        after_create=_typed("create_error.after_create", error.get("after_create", False), bool),
    )


def parse_scenario(data: Any) -> Scenario:
    """Validate a scenario dict; keys left out (or null) take the built-in defaults."""
    raw = {k: v for k, v in _check_keys("scenario", data, _SCENARIO_KEYS).items() if v is not None}
    steps_raw = raw.get("steps", DEFAULT_SCENARIO["steps"])
    if not isinstance(steps_raw, list):
        raise ValueError("steps must be a list")
    shape = raw.get("shape", "legacy")
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}")
    secret = raw.get("webhook_secret")
    if secret is not None:
        if not isinstance(secret, str) or not secret.startswith("whsec_"):
            raise ValueError("webhook_secret must be a 'whsec_...' string")
        try:
            Webhook(secret)
        except Exception as exc:
            raise ValueError(f"webhook_secret is not valid base64: {exc}") from exc
    videos = _typed("videos", raw.get("videos", 1), int)
    max_open = raw.get("max_open")
    if videos < 0 or (max_open is not None and _typed("max_open", max_open, int) < 1):
        raise ValueError("videos must be >= 0 and max_open >= 1")
    video_files = _typed("video_files", raw.get("video_files", []), list)
    if not all(isinstance(name, str) and name and "/" not in name for name in video_files):
        raise ValueError("video_files must be a list of file names without '/'")
    return Scenario(
        steps=tuple(_parse_step(i, s) for i, s in enumerate(steps_raw)),
        shape=shape,
        webhook_secret=secret,
        before_response=_typed("before_response", raw.get("before_response", False), bool),
        create_error=_parse_error(raw["create_error"]) if "create_error" in raw else None,
        videos=videos,
        video_files=tuple(video_files),
        max_open=max_open,
    )
