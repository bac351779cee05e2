"""Lip-sync in the simulator: face identification (`POST /v1/videos/identify-face`, answered at once, no
task) and the session an advanced lip-sync task must name.

A video named by `video_id` must be one of a succeeded task's, as at Kling, which refuses what it did
not make; a `video_url` is taken as a 5 s video. Each video shows one face, visible throughout, whose
picture is a small real PNG served at `/files/extra/face-<session_id>.png`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from .tasks import Task

ADVANCED = "advanced-lip-sync"
URL_VIDEO_MS = 5000  # the length a video given by URL is taken to have


def _video_ms(tasks: Iterable[Task], video_id: object) -> int | None:
    for task in tasks:
        for video in task.videos:
            if video["id"] == video_id and task.status() == "succeed":
                return int(float(video["duration"]) * 1000)
    return None


def identify(tasks: Iterable[Task], body: object, base: str) -> tuple[str, list[dict[str, Any]]]:
    """A new session and the faces of the body's video; ValueError with Kling's message (code 1201)."""
    if not isinstance(body, dict):
        raise ValueError("request body must be a JSON object")
    video_id, video_url = body.get("video_id"), body.get("video_url")
    if bool(video_id) == bool(video_url):
        raise ValueError("exactly one of video_id and video_url is required")
    if video_id:
        length = _video_ms(tasks, video_id)
        if length is None:
            raise ValueError(f"video_id {video_id!r} is not a video of this account")
    elif isinstance(video_url, str) and video_url.startswith(("http://", "https://")):
        length = URL_VIDEO_MS
    else:
        raise ValueError("video_url must be an http(s) URL")
    session_id = str(secrets.randbelow(9 * 10**17) + 10**17)
    face = {
        "face_id": "0",
        "face_image": f"{base}/files/extra/face-{session_id}.png",
        "start_time": 0,
        "end_time": length,
    }
    return session_id, [face]


def refusal(sessions: dict[str, list[dict[str, Any]]], body: dict[str, Any]) -> str | None:
    """Kling's reason to refuse an advanced lip-sync create (code 1201), or None."""
    faces = sessions.get(body.get("session_id"))  # type: ignore[arg-type]
    if faces is None:
        return f"session_id {body.get('session_id')!r} not found: identify the faces first"
    known = {face["face_id"] for face in faces}
    for face in body.get("face_choose") or []:
        if not isinstance(face, dict) or face.get("face_id") not in known:
            return "face_id is not a face of this session"
    return None
