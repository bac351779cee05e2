"""What Kling documents of the videos it made, as far as the service can check it from its own records.

A body that names a Kling video by id (video-extend's `video_id`, lip-sync's `input.video_id`,
identify-face's `video_id`) is checked against the task of the caller's that made it (domain/ownership.py).
That task also says when the video was made and how long it is, so the limits Kling documents on the
video can be checked before anything is paid for, rather than failing upstream minutes later:

* Kling removes its videos 30 days after making them: an older one can no longer be extended,
  lip-synced or searched for faces (`expired`).
* Each use has its own length rule (docs/kling-endpoints.md cites them): lip-sync takes videos of 5 to
  10 s, identify-face up to 60 s, an extension may not take the whole past 3 minutes. Kling reports a
  video's `duration` as a string of seconds with a fraction ("5.1" for a 5-second video), so a length
  rule stated in whole seconds is applied to the duration rounded to the second.

A duration the result does not give (or gives as something other than a number) is not checked: Kling
judges it then.
"""

from __future__ import annotations

import math
from typing import Any

from webhook_service.domain.clock import now_ms
from webhook_service.domain.problems import FieldProblem
from webhook_service.domain.tasks import Task

KLING_KEEPS_VIDEOS_MS = 30 * 86400 * 1000


def video_in(task: Task, video_id: str) -> dict[str, Any]:
    """The video of the task's result with this id ({} when the result no longer names it)."""
    videos = (task.task_result or {}).get("videos")
    found = [v for v in videos if isinstance(v, dict)] if isinstance(videos, list) else []
    return next((video for video in found if str(video.get("id")) == video_id), {})


def seconds(video: dict[str, Any]) -> float | None:
    """The video's length as Kling reported it, in seconds; None when it is not a number."""
    try:
        value = float(str(video.get("duration")))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def expired(task: Task, field: str, use: str) -> FieldProblem | None:
    """`expired` on `field` when the task's video was made more than 30 days ago (Kling has removed it)."""
    made_at = task.upstream_updated_at or task.updated_at
    if now_ms() - made_at <= KLING_KEEPS_VIDEOS_MS:
        return None
    return FieldProblem(
        field, "expired", f"was made more than 30 days ago: Kling has removed it and cannot {use}"
    )


def length_problem(
    video: dict[str, Any], field: str, shortest_s: float, longest_s: float, rule: str
) -> FieldProblem | None:
    """`too_short` or `too_long` on `field` when the video's length, to the second, is outside
    [shortest_s, longest_s]; `rule` says what Kling documents ("Kling lip-syncs videos of 5 to 10 s")."""
    length = seconds(video)
    if length is None or shortest_s <= round(length) <= longest_s:
        return None
    code = "too_short" if round(length) < shortest_s else "too_long"
    return FieldProblem(field, code, f"is {length:g} s long: {rule}")
