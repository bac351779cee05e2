"""A simulated task and the JSON shapes Kling uses for it (query object, both callback shapes).

Status is derived from the clock rather than stored, so queries, callbacks and `max_open` accounting all
agree without a thread having to advance anything.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

from .scenario import TERMINAL, Scenario

# The task types served, each at /v1/<group>/<type>: (group, the fields its create cannot do without).
# An "images" type's results (also "images/editing": expansion) are `n` images (1 when the body has no
# `n`), a "videos" type's videos.
TASK_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "image2video": ("videos", ("image",)),
    "text2video": ("videos", ("prompt",)),
    "generations": ("images", ("prompt",)),
    "kolors-virtual-try-on": ("images", ("human_image", "cloth_image")),
    "multi-image2image": ("images", ("subject_image_list",)),
    "lip-sync": ("videos", ("input",)),
    "advanced-lip-sync": ("videos", ("session_id", "face_choose")),
    "video-extend": ("videos", ("video_id",)),
    "multi-image2video": ("videos", ("image_list", "prompt")),
    "expand": ("images/editing", ("image",)),
    "effects": ("videos", ("effect_scene", "input")),
}


def pack_of(task_type: str) -> str:
    """Kling counts open tasks per resource pack: video, image, and try-on's own."""
    if task_type == "kolors-virtual-try-on":
        return "tryon"
    return "video" if TASK_TYPES[task_type][0] == "videos" else "image"


def slots_of(task_type: str, body: dict[str, Any]) -> int:
    """An image task holds one slot of its pack per image asked for (`n`), any other task one."""
    n = body.get("n", 1)
    return n if pack_of(task_type) == "image" and isinstance(n, int) and n > 0 else 1


@dataclass
class Task:
    """One created task: the request as received, its scenario, and the result videos (or, for an image
    task, images) it will show."""

    task_id: str
    task_type: str  # a key of TASK_TYPES: the path it was created at
    external_task_id: str | None
    request: dict[str, Any]
    headers: dict[str, str]
    scenario: Scenario
    created_ms: int
    created_mono: float
    videos: list[dict[str, str]] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)  # Kling's {index, url}
    unified: bool = False  # made through Kling's unified API: options nested, the newer shape always
    parent_video: dict[str, str] | None = None  # a video-extend task's: the video it continues

    def _option(self, key: str) -> Any:
        holder = self.request.get("options") if self.unified else self.request
        return holder.get(key) if isinstance(holder, dict) else None

    @property
    def callback_url(self) -> str | None:
        url = self._option("callback_url")
        return url if isinstance(url, str) and url else None

    @property
    def watermark(self) -> bool:
        info = self._option("watermark_info")
        return isinstance(info, dict) and info.get("enabled") is True

    def _reached(self) -> list[int]:
        elapsed = time.monotonic() - self.created_mono
        return [i for i, step in enumerate(self.scenario.steps) if step.delay <= elapsed]

    def status(self) -> str:
        """The furthest step (by list position) whose delay has elapsed, else `submitted`."""
        return self._view()[0]

    def is_open(self) -> bool:
        return self.status() not in TERMINAL

    def video_ids(self) -> set[str]:
        return {video["id"] for video in self.videos}

    def image_names(self) -> set[str]:
        """The file names of the images served at `/files/<task_id>/<name>`."""
        return {str(image["url"]).rsplit("/", 1)[-1] for image in self.images}

    def result(self) -> dict[str, Any]:
        """`task_result`: Kling puts an image task's results in `images`, a video task's in `videos`."""
        if self.images:
            return {"images": [dict(image) for image in self.images]}
        return {"videos": [dict(v) for v in self.videos]}

    def _view(self) -> tuple[str, str, int]:
        """Status, status message and updated_at (ms, the latest change seen) as of now."""
        reached = self._reached()
        if not reached:
            return "submitted", "", self.created_ms
        step = self.scenario.steps[max(reached)]
        latest = max(self.scenario.steps[i].delay for i in reached)
        return step.status, step.message, self.created_ms + int(latest * 1000)

    def _units(self, status: str) -> str:
        if status != "succeed":
            return "0"
        if self.images:
            return str(len(self.images))
        pro = self.request.get("mode") == "pro"
        long = str(self.request.get("duration", "5")) == "10"
        return str((2 if pro else 1) * (2 if long else 1))

    def _task_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {} if self.parent_video is None else {"parent_video": dict(self.parent_video)}
        return info if self.external_task_id is None else {**info, "external_task_id": self.external_task_id}

    def query_object(self) -> dict[str, Any]:
        """The task as `GET /v1/videos/<type>/{id}` shows it."""
        status, message, updated = self._view()
        body: dict[str, Any] = {
            "task_id": self.task_id,
            "task_status": status,
            "task_status_msg": message,
            "task_info": self._task_info(),
            "watermark_info": {"enabled": self.watermark},
            "final_unit_deduction": self._units(status),
            "created_at": self.created_ms,
            "updated_at": updated,
        }
        if status == "succeed":
            body["task_result"] = self.result()
        return body

    def created_object(self) -> dict[str, Any]:
        """The `data` of the create response."""
        return {
            "task_id": self.task_id,
            "task_status": "submitted",
            "task_info": self._task_info(),
            "created_at": self.created_ms,
            "updated_at": self.created_ms,
        }

    def callback_body(self, index: int) -> dict[str, Any]:
        """The callback for step `index`, in the scenario's shape (it reflects that step, not the clock)."""
        step = self.scenario.steps[index]
        updated = self.created_ms + int(step.delay * 1000)
        if self.scenario.shape == "new" or self.unified:
            return self._newer(step.status, step.message, updated)
        body: dict[str, Any] = {
            "task_id": self.task_id,
            "task_status": step.status,
            "task_status_msg": step.message,
            "created_at": self.created_ms,
            "updated_at": updated,
            "final_unit_deduction": self._units(step.status),
            "task_info": self._task_info(),
        }
        if step.status == "succeed":
            body["task_result"] = self.result()
        return body

    def unified_object(self) -> dict[str, Any]:
        """The task as the unified API's `GET /tasks` shows it now."""
        return self._newer(*self._view())

    def _newer(self, status: str, message: str, updated: int) -> dict[str, Any]:
        """The newer shape (the unified API's task, and its callbacks): `id`, `status`, `outputs`."""
        body: dict[str, Any] = {
            "id": self.task_id,
            "status": "succeeded" if status == "succeed" else status,
            "message": message,
            "create_time": self.created_ms,
            "update_time": updated,
        }
        if self.external_task_id is not None:
            body["external_id"] = self.external_task_id
        if status == "succeed":
            videos = [{"type": "video", **v} for v in self.videos]
            body["outputs"] = videos + [{"type": "image", "url": i["url"]} for i in self.images]
            package = "image" if self.images else "video"
            body["billing"] = [
                {"charge_type": "unit", "amount": self._units(status), "package_type": package}
            ]
        return body

    def snapshot(self) -> dict[str, Any]:
        """What tests see through `SimState.tasks()`: the request as received plus the current status."""
        return {
            "task_id": self.task_id,
            "type": self.task_type,
            "external_task_id": self.external_task_id,
            "request": copy.deepcopy(self.request),
            "headers": dict(self.headers),
            "created_at": self.created_ms,
            "status": self.status(),
        }
