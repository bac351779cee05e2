"""Video extension (`/v1/videos/video-extend`) in the simulator: the video named by `video_id` must be
one of a succeeded task's, as at Kling, which refuses what it did not make; the new task's video is the
whole, about 4.5 s longer, and `task_info.parent_video` shows the video it continued."""

from __future__ import annotations

from collections.abc import Iterable

from .tasks import Task

EXTEND = "video-extend"
EXTENSION_S = 4.5  # Kling adds 4 to 5 seconds
LONGEST_S = 180.0  # and an extended video may not pass 3 minutes


def parent_video(tasks: Iterable[Task], video_id: object) -> dict[str, str] | None:
    """The video with this id in a succeeded task's result: {id, url, duration}."""
    for task in tasks:
        for video in task.videos:
            if video["id"] == video_id and task.status() == "succeed":
                return {key: video[key] for key in ("id", "url", "duration")}
    return None


def refusal(parent: dict[str, str] | None, video_id: object) -> str | None:
    """Kling's reason to refuse the extension (code 1201), or None."""
    if parent is None:
        return f"video_id {video_id!r} is not a video of this account"
    if float(parent["duration"]) + EXTENSION_S > LONGEST_S:
        return "the extended video would be longer than 3 minutes"
    return None


def extend(task: Task, parent: dict[str, str]) -> None:
    """The extension's video is the whole: the parent's length plus the extension."""
    task.parent_video = dict(parent)
    for video in task.videos:
        video["duration"] = f"{float(parent['duration']) + EXTENSION_S:g}"
