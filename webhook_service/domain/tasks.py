"""A task as the service knows it, and the one state machine every piece of news goes through.

News about a task comes from three places: Kling's answer to the create request, Kling's callbacks (in
two shapes), and, later, polling. All three are turned into a `StatusUpdate` and applied with
`apply_update`, so the rules (status only moves forward, a terminal status never changes, duplicates
and stale news change nothing) live in one place.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from webhook_service.config import DEFAULT_MAX_OUTPUTS
from webhook_service.domain.clock import now_ms
from webhook_service.domain.errors import UnknownCallbackShape
from webhook_service.domain.news_fields import bound
from webhook_service.domain.tenants import DEFAULT_TENANT, client_id
from webhook_service.replies import stored_json

# The type of every task recorded before types existed (task_types.py's IMAGE2VIDEO). It is named here,
# not there, so that a task's record and the settings load without every type's body rules (pydantic,
# httpx): a work horse or a command that only reads tasks starts faster.
DEFAULT_TYPE = "image2video"
# A status message is a reason in a sentence or two; it is copied into the task, its events, Slack.
STATUS_MSG_MAX_CHARS = 2000


class Status(StrEnum):
    QUEUED = "queued"  # recorded by the service, not yet accepted upstream
    SUBMITTED = "submitted"
    PROCESSING = "processing"
    SUCCEED = "succeed"  # Kling's spelling
    FAILED = "failed"
    REJECTED = "rejected"  # upstream refused the create request: no upstream task exists
    EXPIRED = "expired"  # no news for TASK_TIMEOUT_S; Kling's final word may still complete it

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def terminal(self) -> bool:
        """Final as far as the service is concerned: it no longer polls the task or holds a slot for it."""
        return self.rank >= _RANK[Status.EXPIRED]


_RANK = {
    Status.QUEUED: 0,
    Status.SUBMITTED: 1,
    Status.PROCESSING: 2,
    Status.EXPIRED: 3,
    Status.SUCCEED: 4,
    Status.FAILED: 4,
    Status.REJECTED: 4,
}

# What Kling clients see for the service's own final states: they know only Kling's four.
_KLING_STATUS = {Status.REJECTED: "failed", Status.EXPIRED: "failed"}

# The newer callback shape says "succeeded"; everything else in the service speaks Kling v1.
_STATUS_ALIASES = {"succeeded": Status.SUCCEED}


class ArchiveState(StrEnum):
    ARCHIVING = "archiving"
    ARCHIVED = "archived"
    FAILED = "archive_failed"


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"


def parse_status(value: object) -> Status | None:
    if not isinstance(value, str):
        return None
    if value in _STATUS_ALIASES:
        return _STATUS_ALIASES[value]
    try:
        status = Status(value)
    except ValueError:
        return None
    return None if status in (Status.QUEUED, Status.REJECTED, Status.EXPIRED) else status


@dataclass
class StatusUpdate:
    """One piece of upstream news, whatever shape it came in."""

    status: Status
    task_id: str | None = None
    external_task_id: str | None = None
    status_msg: str | None = None
    task_result: dict[str, Any] | None = None
    final_unit_deduction: str | None = None
    upstream_created_at: int | None = None
    upstream_updated_at: int | None = None
    outputs_dropped: int = 0  # outputs past CALLBACK_MAX_OUTPUTS, left out of task_result
    parent_video: dict[str, str] | None = None  # a video-extend task's `task_info.parent_video`
    fields_dropped: dict[str, Any] | None = None  # undocumented or over their caps (domain/news_fields.py)

    def __post_init__(self) -> None:
        bound(self)


@dataclass
class Task:
    external_task_id: str  # the upstream id: the client's own, prefixed for a tenant other than default
    status: Status = Status.QUEUED
    task_id: str | None = None
    status_msg: str = ""
    model_name: str = "kling-v1"
    client_callback_url: str | None = None
    watermark_info: dict[str, Any] | None = None
    task_result: dict[str, Any] | None = None
    final_unit_deduction: str | None = None
    error: dict[str, Any] | None = None
    upstream_task_ids: list[str] = field(default_factory=list)
    created_at: int = field(default_factory=now_ms)
    updated_at: int = field(default_factory=now_ms)
    upstream_created_at: int | None = None
    upstream_updated_at: int | None = None
    submit_attempts: int = 0
    submit_uncertain: bool = False  # the last create may have reached Kling: look it up before resending
    archive_state: ArchiveState | None = None
    archive_error: dict[str, Any] | None = None
    archived_videos: list[dict[str, Any]] = field(default_factory=list)
    archived_images: list[dict[str, Any]] = field(default_factory=list)  # an image task's (domain/archive.py)
    recovered: bool = False  # recorded again after Redis lost it (domain/recovery.py)
    tenant: str = DEFAULT_TENANT  # a task recorded before tenants existed is the default tenant's
    type: str = DEFAULT_TYPE  # its Kling task type (domain/task_types.py): where it lives upstream
    # What a video-extend task extends: {"id"} from its request, then Kling's {id, url, duration}.
    parent_video: dict[str, str] | None = None

    @property
    def client_task_id(self) -> str:
        """The external_task_id as its client chose it and sees it."""
        return client_id(self.external_task_id, self.tenant)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        """The stored form, without the fields that still hold an empty default (None, "", [], False,
        0), which `from_dict` gives back: a finished task's record falls from Redis's 1,280-byte
        allocation to its 1,024-byte one, for its whole retention. A default with a meaning (the model,
        the type, the tenant) is always written: a record must not change when a default does. A
        shallow dict is enough for `json` (asdict deep-copies, for nothing here)."""
        kept = ((name, getattr(self, name)) for name in _TASK_FIELDS)
        return stored_json({name: value for name, value in kept if not _empty_default(name, value)})

    @classmethod
    def from_json(cls, raw: bytes | str) -> Task:
        return cls.from_dict(json.loads(raw))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["status"] = Status(known.get("status", Status.QUEUED))
        if known.get("archive_state"):
            known["archive_state"] = ArchiveState(known["archive_state"])
        return cls(**known)

    def archive_link(self, base_url: str, index: int, kind: str = "videos") -> str:
        """By external_task_id for the default tenant; by Kling's task_id, which every tenant and an
        admin can resolve alike, for the others (an archived file's task always has one). `kind` is
        `videos` or `images`: the list the file is in."""
        ref = self.external_task_id if self.tenant == DEFAULT_TENANT else self.task_id or self.client_task_id
        return f"{base_url}/v1/tasks/{quote(ref, safe='')}/{kind}/{index}"

    def result_with_archive_links(self, base_url: str) -> dict[str, Any] | None:
        """Kling's task_result, each video or image keeping Kling's `url`, the archive's link beside it."""
        if self.task_result is None:
            return None
        if "images" in self.task_result:
            return {**self.task_result, "images": self._images_with_links(base_url)}
        links = {
            (video["video_id"], video["kind"]): self.archive_link(base_url, n)
            for n, video in enumerate(self.archived_videos)
        }
        videos = []
        for video in self.task_result.get("videos", []):
            video = dict(video)
            for kind, key in (("video", "archive_url"), ("watermark", "watermark_archive_url")):
                if (link := links.get((str(video.get("id")), kind))) is not None:
                    video[key] = link
            videos.append(video)
        return {**self.task_result, "videos": videos}

    def _images_with_links(self, base_url: str) -> list[dict[str, Any]]:
        archived = {image["image_index"]: n for n, image in enumerate(self.archived_images)}
        images: list[Any] = []
        for position, image in enumerate((self.task_result or {}).get("images") or []):
            if isinstance(image, dict) and (n := archived.get(image_index(image, position))) is not None:
                image = {**image, "archive_url": self.archive_link(base_url, n, "images")}
            images.append(image)
        return images

    @property
    def kling_task_id(self) -> str:
        """The `task_id` Kling clients are given: Kling's, or the client's external_task_id until Kling has
        given one (queued). Kling always answers a create with a task_id, and clients poll by it: an empty
        one would have them poll the list's path. The service finds a task by either id."""
        return self.task_id or self.client_task_id

    def kling_view(self, base_url: str = "") -> dict[str, Any]:
        """The task in Kling's query shape, so existing Kling clients read it unchanged."""
        view: dict[str, Any] = {
            "task_id": self.kling_task_id,
            "type": self.type,
            "task_status": _KLING_STATUS.get(self.status, self.status.value),
            "task_status_msg": self.status_msg,
            "task_info": {"external_task_id": self.client_task_id},
            "created_at": self.upstream_created_at or self.created_at,
            "updated_at": self.upstream_updated_at or self.updated_at,
        }
        if self.parent_video is not None:  # as Kling shows a video-extend task's
            view["task_info"]["parent_video"] = dict(self.parent_video)
        if self.watermark_info is not None:
            view["watermark_info"] = self.watermark_info
        if self.task_result is not None:
            view["task_result"] = self.result_with_archive_links(base_url)
        if self.final_unit_deduction is not None:
            view["final_unit_deduction"] = self.final_unit_deduction
        return view


_TASK_FIELDS = tuple(f.name for f in fields(Task))
_EMPTY_DEFAULTS = {
    f.name: default
    for f in fields(Task)
    if (default := f.default if f.default_factory is MISSING else f.default_factory())
    in (None, "", [], False, 0)
}


def _empty_default(name: str, value: Any) -> bool:
    """Whether the field holds its empty default (`0` and `False` told apart, as `==` does not)."""
    default = _EMPTY_DEFAULTS.get(name, MISSING)
    return value == default and type(value) is type(default)


def image_index(image: dict[str, Any], position: int) -> Any:
    """Kling numbers an image task's results (`index`); without a number, its place in the list."""
    return image.get("index", position)


def apply_update(task: Task, update: StatusUpdate) -> Outcome:
    """Fold `update` into `task` in place; only an update that moves the status forward changes it."""
    if update.task_id and update.task_id != task.task_id:
        if task.task_id is None:
            task.task_id = update.task_id
        elif update.task_id not in task.upstream_task_ids:
            # A gateway may forward our callback URL to Kling, whose task id then differs from the
            # gateway's: remember it so lookups by either id find the task.
            task.upstream_task_ids.append(update.task_id)
    known = (task.parent_video or {}).get("id")
    if update.parent_video and known in (None, update.parent_video["id"]):
        # Kling's word on the extended video (its url, duration) completes what the request named;
        # news naming another video is not believed: the request decided what is extended.
        task.parent_video = {**(task.parent_video or {}), **update.parent_video}
    if update.status.rank < task.status.rank:
        return Outcome.STALE
    if update.status.rank == task.status.rank:
        return Outcome.DUPLICATE
    task.status = update.status
    if update.status_msg is not None:
        task.status_msg = update.status_msg
    if update.task_result is not None:
        task.task_result = update.task_result
    if update.final_unit_deduction is not None:
        task.final_unit_deduction = update.final_unit_deduction
    task.upstream_created_at = update.upstream_created_at or task.upstream_created_at
    task.upstream_updated_at = update.upstream_updated_at or task.upstream_updated_at
    task.updated_at = now_ms()
    return Outcome.APPLIED


def callback_shape(body: dict[str, Any]) -> str:
    """Which of Kling's two callback shapes a body has: `legacy` (`task_id`/`task_status`) or `newer`."""
    return "legacy" if "task_status" in body or "task_id" in body else "newer"


def update_from_callback(body: dict[str, Any], *, max_outputs: int = DEFAULT_MAX_OUTPUTS) -> StatusUpdate:
    """Read either callback shape: legacy (`task_id`/`task_status`) or newer (`id`/`status`).

    At most `max_outputs` outputs are kept (CALLBACK_MAX_OUTPUTS), so one callback cannot order the
    archive to fetch thousands of videos; how many were left out is in `outputs_dropped`.
    """
    if callback_shape(body) == "legacy":
        return _update_from_legacy(body, max_outputs)
    if "status" in body or "id" in body:
        return _update_from_newer(body, max_outputs)
    raise UnknownCallbackShape("expected task_id/task_status (legacy) or id/status (newer) keys")


def update_from_kling_task(data: dict[str, Any], *, max_outputs: int = DEFAULT_MAX_OUTPUTS) -> StatusUpdate:
    """Kling's task object, as returned by create and query: the /v1 API's has the legacy callback's
    keys, the unified API's (`id`, `status`, `outputs`) the newer callback's."""
    return update_from_callback(data, max_outputs=max_outputs)


def _update_from_legacy(body: dict[str, Any], max_outputs: int) -> StatusUpdate:
    status = parse_status(body.get("task_status"))
    if status is None:
        raise UnknownCallbackShape(f"task_status {body.get('task_status')!r} is not a Kling status")
    task_info = info if isinstance(info := body.get("task_info"), dict) else {}
    result = body.get("task_result")
    dropped = 0
    if isinstance(result, dict):  # `videos`, and `images` for Kling's image tasks: each list capped
        dropped = sum(
            len(v) - max_outputs for v in result.values() if isinstance(v, list) and len(v) > max_outputs
        )
        result = {k: v[:max_outputs] if isinstance(v, list) else v for k, v in result.items()}
    return StatusUpdate(
        status=status,
        task_id=_str_or_none(body.get("task_id")),
        external_task_id=_str_or_none(task_info.get("external_task_id")),
        status_msg=_message(body.get("task_status_msg")),
        task_result=result if isinstance(result, dict) else None,
        final_unit_deduction=_str_or_none(body.get("final_unit_deduction")),
        upstream_created_at=_int_or_none(body.get("created_at")),
        upstream_updated_at=_int_or_none(body.get("updated_at")),
        outputs_dropped=dropped,
        parent_video=_parent_video(task_info.get("parent_video")),
    )


def _parent_video(value: object) -> dict[str, str] | None:
    """Kling's `task_info.parent_video` {id, url, duration}, its values as strings, nothing else kept."""
    if not isinstance(value, dict) or _str_or_none(value.get("id")) is None:
        return None
    kept = {key: _str_or_none(value.get(key)) for key in ("id", "url", "duration")}
    return {key: text for key, text in kept.items() if text is not None}


def _update_from_newer(body: dict[str, Any], max_outputs: int) -> StatusUpdate:
    status = parse_status(body.get("status"))
    if status is None:
        raise UnknownCallbackShape(f"status {body.get('status')!r} is not a Kling status")
    outputs = body.get("outputs")
    outputs = [output for output in outputs if isinstance(output, dict)] if isinstance(outputs, list) else []
    videos = [
        {k: v for k, v in output.items() if k in ("id", "url", "watermark_url", "duration")}
        for output in outputs
        if output.get("type", "video") == "video"
    ]
    # An image output has no index in this shape: its place in the list is the legacy shape's index.
    images = [
        {"index": n, "url": o.get("url")}
        for n, o in enumerate(o for o in outputs if o.get("type") == "image")
    ]
    result = (
        {"videos": videos[:max_outputs]} if videos else {"images": images[:max_outputs]} if images else None
    )
    return StatusUpdate(
        status=status,
        task_id=_str_or_none(body.get("id")),
        external_task_id=_str_or_none(body.get("external_id")),
        status_msg=_message(body.get("message")),
        task_result=result,
        final_unit_deduction=_billed_units(body.get("billing")),
        upstream_created_at=_int_or_none(body.get("create_time")),
        upstream_updated_at=_int_or_none(body.get("update_time")),
        outputs_dropped=max(0, len(videos) - max_outputs) + max(0, len(images) - max_outputs),
    )


def _billed_units(billing: object) -> str | None:
    """The newer shape's `billing[]` as the legacy shape's `final_unit_deduction`, which usage counts:
    its `unit` charges added up (a `cash` charge is money, not units of a resource pack: left out).
    None when it has no unit charge; an amount that is not a finite, non-negative number is skipped."""
    items = billing if isinstance(billing, list) else []
    amounts = [i.get("amount") for i in items if isinstance(i, dict) and i.get("charge_type") == "unit"]
    total, counted = Decimal(0), False
    for amount in amounts:
        try:
            value = Decimal(str(amount))
        except InvalidOperation:
            continue
        if value.is_finite() and value >= 0:
            total, counted = total + value, True
    return format(total.normalize(), "f") if counted else None


def _message(value: object) -> str | None:
    text = _str_or_none(value)
    return text[:STATUS_MSG_MAX_CHARS] + "…" if text and len(text) > STATUS_MSG_MAX_CHARS else text


def _str_or_none(value: object) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
