"""Every kind of Kling task the service serves, in one place: where it lives upstream, what its
create body must look like, and what it makes. Adding a task type is one entry in TASK_TYPES; the
drop-in API, the simulator's counterpart, submission, reconciliation and recovery all read it here.

Kling keeps each task type at its own path (``/v1/videos/text2video``, ``/v1/images/generations``):
a task is created, queried (by task_id or external_task_id) and listed there, and only there, so a
task remembers its type (`Task.type`) and every later call goes to that type's path. The types of
Kling's unified API (`create_path` set: ``/text-to-video/kling-3.0``) are created at their path and
queried at ``/tasks`` (domain/unified.py), their bodies nested (domain/unified_rules.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from webhook_service.domain import (
    advanced_lip_sync_rules,
    effects_rules,
    expand_rules,
    image_rules,
    kling25_rules,
    kling26_rules,
    kling30_turbo_rules,
    lip_sync_rules,
    motion_rules,
    multi_image2video_rules,
    multi_image_rules,
    o1_rules,
    omni_rules,
    text2video_rules,
    tryon_rules,
    unified_rules,
    validation,
    video_extend_rules,
)
from webhook_service.domain.body_limits import V1_CREATE, BodyLimit
from webhook_service.domain.body_rules import BodyRules, validate_body
from webhook_service.domain.tasks import DEFAULT_TYPE

IMAGE2VIDEO = DEFAULT_TYPE  # the type of every task recorded before types existed (domain/tasks.py)


class Output(StrEnum):
    """What a task type makes: where its results are in `task_result` (`videos` or `images`)."""

    VIDEO = "video"
    IMAGE = "image"


class Pack(StrEnum):
    """Kling counts open tasks per resource pack, each pack with its own limit: a full video pack does
    not hold back an image task (domain/admission.py keeps one pool of slots per pack)."""

    VIDEO = "video"
    IMAGE = "image"
    TRYON = "tryon"


# Types counted apart from what their output says: virtual try-on has a pack of its own.
_OWN_PACK = {"kolors-virtual-try-on": Pack.TRYON}


@dataclass(frozen=True)
class TaskType:
    name: str  # the last segment of Kling's path: "image2video", "generations", "kolors-virtual-try-on"
    group: str  # the path's segments before it: "videos", "images" or "images/editing"
    output: Output
    rules: BodyRules
    summary: str  # a line for the API's documentation
    create_path: str = ""  # a unified API type's create path (the model in it); "" for a /v1 type
    body_limit: BodyLimit = V1_CREATE  # the largest create body its route reads

    @property
    def unified(self) -> bool:
        return bool(self.create_path)

    @property
    def path(self) -> str:
        """Create (POST) and list (GET) here; one task at `item_path` (a unified type: create only)."""
        return self.create_path or f"/v1/{self.group}/{self.name}"

    @property
    def pack(self) -> Pack:
        return _OWN_PACK.get(self.name, Pack.VIDEO if self.output is Output.VIDEO else Pack.IMAGE)

    def slots_needed(self, body: dict[str, Any]) -> int:
        """An image task holds one slot per image it asks for (`n`, 1 when absent); any other task one."""
        n = body.get("n", 1) if self.output is Output.IMAGE else 1
        return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1

    def model_of(self, body: dict[str, Any]) -> str:
        """The model a create body asks for, as usage counts it: `model_name`, or `input.model_name` in a
        body that wraps its fields in `input` (video effects), else the type's default."""
        wrapped = body.get("input")
        model = (wrapped.get("model_name") if isinstance(wrapped, dict) else None) or body.get("model_name")
        return model if isinstance(model, str) else self.rules.default_model

    def item_path(self, task_or_external_id: str) -> str:
        # external_task_ids may hold '/', '?' or '#': encode, or the path would point elsewhere.
        return f"{self.path}/{quote(task_or_external_id, safe='')}"

    def validate(
        self,
        body: object,
        *,
        extra_fields: frozenset[str] | None = None,
        allowed_hosts: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """The body to forward upstream, or RequestInvalid listing every problem (domain/body_rules.py);
        a unified type's with its options at the top level, as recorded (domain/unified_rules.py)."""
        if self.unified:
            return unified_rules.validate(
                self.rules, body, extra_fields=extra_fields, allowed_hosts=allowed_hosts
            )
        return validate_body(self.rules, body, extra_fields=extra_fields, allowed_hosts=allowed_hosts)

    def upstream_body(self, request: dict[str, Any], callback_url: str) -> dict[str, Any]:
        """The recorded request as Kling takes it, with the service's own callback_url."""
        if self.unified:
            return unified_rules.upstream_body(request, callback_url)
        return {**request, "callback_url": callback_url}


TASK_TYPES: dict[str, TaskType] = {
    IMAGE2VIDEO: TaskType(
        IMAGE2VIDEO, "videos", Output.VIDEO, validation.RULES, "Create an image-to-video task"
    ),
    "text2video": TaskType(
        "text2video", "videos", Output.VIDEO, text2video_rules.RULES, "Create a text-to-video task"
    ),
    "generations": TaskType(
        "generations", "images", Output.IMAGE, image_rules.RULES, "Create an image generation task"
    ),
    "kolors-virtual-try-on": TaskType(
        "kolors-virtual-try-on", "images", Output.IMAGE, tryon_rules.RULES, "Create a virtual try-on task"
    ),
    "multi-image2image": TaskType(
        "multi-image2image",
        "images",
        Output.IMAGE,
        multi_image_rules.RULES,
        "Create a multi-image to image task",
    ),
    "multi-image2video": TaskType(
        "multi-image2video",
        "videos",
        Output.VIDEO,
        multi_image2video_rules.RULES,
        "Create a multi-image to video task",
    ),
    video_extend_rules.NAME: TaskType(
        video_extend_rules.NAME,
        "videos",
        Output.VIDEO,
        video_extend_rules.RULES,
        "Create a video extension task (a video of one of your tasks, continued by 4 to 5 s)",
    ),
    "lip-sync": TaskType(
        "lip-sync", "videos", Output.VIDEO, lip_sync_rules.RULES, "Create a lip-sync task (the older API)"
    ),
    "advanced-lip-sync": TaskType(
        "advanced-lip-sync",
        "videos",
        Output.VIDEO,
        advanced_lip_sync_rules.RULES,
        "Create an advanced lip-sync task (a face from identify-face)",
    ),
    # Kling keeps image expansion one level deeper, at /v1/images/editing/expand: the group is two segments.
    "expand": TaskType(
        "expand", "images/editing", Output.IMAGE, expand_rules.RULES, "Create an image expansion task"
    ),
    "effects": TaskType(
        "effects",
        "videos",
        Output.VIDEO,
        effects_rules.RULES,
        "Create a video effects task (a preset scene applied to one photo or two)",
    ),
    # Kling's unified API: the model in the path, the body nested, every task queried at /tasks.
    "kling-3.0-text-to-video": TaskType(
        "kling-3.0-text-to-video",
        "videos",
        Output.VIDEO,
        unified_rules.TEXT_TO_VIDEO,
        "Create a Kling 3.0 text-to-video task (unified API)",
        create_path=unified_rules.TEXT_TO_VIDEO_PATH,
        body_limit=unified_rules.TEXT_TO_VIDEO_BODY,
    ),
    "kling-3.0-image-to-video": TaskType(
        "kling-3.0-image-to-video",
        "videos",
        Output.VIDEO,
        unified_rules.IMAGE_TO_VIDEO,
        "Create a Kling 3.0 image-to-video task (unified API)",
        create_path=unified_rules.IMAGE_TO_VIDEO_PATH,
        body_limit=unified_rules.IMAGE_TO_VIDEO_BODY,
    ),
    "kling-2.6-text-to-video": TaskType(
        "kling-2.6-text-to-video",
        "videos",
        Output.VIDEO,
        kling26_rules.TEXT_TO_VIDEO,
        "Create a Kling 2.6 text-to-video task (unified API)",
        create_path=kling26_rules.TEXT_TO_VIDEO_PATH,
        body_limit=kling26_rules.TEXT_TO_VIDEO_BODY,
    ),
    "kling-2.6-image-to-video": TaskType(
        "kling-2.6-image-to-video",
        "videos",
        Output.VIDEO,
        kling26_rules.IMAGE_TO_VIDEO,
        "Create a Kling 2.6 image-to-video task (unified API)",
        create_path=kling26_rules.IMAGE_TO_VIDEO_PATH,
        body_limit=kling26_rules.IMAGE_TO_VIDEO_BODY,
    ),
    "kling-2.5-turbo-text-to-video": TaskType(
        "kling-2.5-turbo-text-to-video",
        "videos",
        Output.VIDEO,
        kling25_rules.TEXT_TO_VIDEO,
        "Create a Kling 2.5 Turbo text-to-video task (unified API)",
        create_path=kling25_rules.TEXT_TO_VIDEO_PATH,
        body_limit=kling25_rules.TEXT_TO_VIDEO_BODY,
    ),
    "kling-2.5-turbo-image-to-video": TaskType(
        "kling-2.5-turbo-image-to-video",
        "videos",
        Output.VIDEO,
        kling25_rules.IMAGE_TO_VIDEO,
        "Create a Kling 2.5 Turbo image-to-video task (unified API)",
        create_path=kling25_rules.IMAGE_TO_VIDEO_PATH,
        body_limit=kling25_rules.IMAGE_TO_VIDEO_BODY,
    ),
    "kling-3.0-turbo-text-to-video": TaskType(
        "kling-3.0-turbo-text-to-video",
        "videos",
        Output.VIDEO,
        kling30_turbo_rules.TEXT_TO_VIDEO,
        "Create a Kling 3.0 Turbo text-to-video task (unified API)",
        create_path=kling30_turbo_rules.TEXT_TO_VIDEO_PATH,
        body_limit=kling30_turbo_rules.TEXT_TO_VIDEO_BODY,
    ),
    "kling-3.0-turbo-image-to-video": TaskType(
        "kling-3.0-turbo-image-to-video",
        "videos",
        Output.VIDEO,
        kling30_turbo_rules.IMAGE_TO_VIDEO,
        "Create a Kling 3.0 Turbo image-to-video task (unified API)",
        create_path=kling30_turbo_rules.IMAGE_TO_VIDEO_PATH,
        body_limit=kling30_turbo_rules.IMAGE_TO_VIDEO_BODY,
    ),
    "kling-o1-omni-video": TaskType(
        "kling-o1-omni-video",
        "videos",
        Output.VIDEO,
        o1_rules.RULES,
        "Create a Kling O1 omni video task (unified API)",
        create_path=o1_rules.OMNI_VIDEO_PATH,
        body_limit=o1_rules.BODY,
    ),
    "kling-3.0-motion-control": TaskType(
        "kling-3.0-motion-control",
        "videos",
        Output.VIDEO,
        motion_rules.KLING_3_0,
        "Create a Kling 3.0 motion control task (unified API: a character moving as a video's person)",
        create_path=motion_rules.KLING_3_0_PATH,
        body_limit=motion_rules.BODY,
    ),
    "kling-2.6-motion-control": TaskType(
        "kling-2.6-motion-control",
        "videos",
        Output.VIDEO,
        motion_rules.KLING_2_6,
        "Create a Kling 2.6 motion control task (unified API: a character moving as a video's person)",
        create_path=motion_rules.KLING_2_6_PATH,
        body_limit=motion_rules.BODY,
    ),
    "kling-3.0-omni-video": TaskType(
        "kling-3.0-omni-video",
        "videos",
        Output.VIDEO,
        omni_rules.RULES,
        "Create a Kling 3.0 Omni video task (unified API)",
        create_path=omni_rules.OMNI_VIDEO_PATH,
        body_limit=omni_rules.BODY,
    ),
}


def task_type(name: str) -> TaskType:
    """The type by name; KeyError for a type the service does not serve."""
    return TASK_TYPES[name]
