"""What a request body names by a Kling id, a video or a face session, must be the caller's tenant's.

Tenants share one Kling account, and Kling acts on any of the account's videos and face sessions,
whoever asks: without this check a tenant that learnt another's video id (from a shared link, a log, a
guess) could lip-sync it, read the faces in it, or animate a face another tenant identified. So:

* **A video id** (video-extend's `video_id`, lip-sync's `input.video_id`, identify-face's `video_id`)
  must be in the result of one of the tenant's own tasks, as the store's video index knows it
  (`video:<id>`, written as each result arrives). Another tenant's video is refused exactly as a video
  the service has never seen: the same 400, field, code and words, so the answer tells nothing about
  which ids exist. A video made outside the service is refused too: letting unknown videos through would
  answer "unknown" differently from "someone else's", and would let a tenant reach another's video once
  its task has left Redis. A `video_url` is the caller's own file and needs no check.
* **A face session** (advanced lip-sync's `session_id`) must be one identify-face answered to the same
  tenant. Each is recorded when Kling answers (`face-session:<id>` -> tenant) with a Redis TTL of the
  time Kling keeps a session, so nothing is left behind for retention to prune. A session the service
  did not hand out, or has forgotten (past its TTL, or a lost Redis), is refused like another tenant's:
  identify the faces again.
"""

from __future__ import annotations

from typing import Any

from webhook_service.domain.advanced_lip_sync_rules import TYPE_NAME as ADVANCED_LIP_SYNC
from webhook_service.domain.lip_sync_rules import TYPE_NAME as LIP_SYNC
from webhook_service.domain.problems import FieldProblem, RequestInvalid
from webhook_service.domain.tasks import Task
from webhook_service.replies import text_or_none
from webhook_service.services import Services

# How long Kling keeps an identify-face session: 24 hours, the one figure any copy of its reference
# gives (docs/kling-endpoints.md). A session Kling has dropped is refused by Kling itself.
FACE_SESSION_TTL_S = 24 * 3600

NOT_YOUR_VIDEO = (
    "is not a video of one of your tasks: give the id of a video in the task_result of a task you "
    "created through this service and still kept here"
)
NOT_YOUR_SESSION = (
    "is not a face session of yours: give the session_id that POST /v1/videos/identify-face "
    "answered you within the last 24 hours"
)


def video_of_tenant(services: Services, tenant: str, video_id: str, field: str, *, hint: str = "") -> Task:
    """The tenant's task whose result is this video; RequestInvalid on `field` when there is none,
    whether the video is another tenant's or unknown (the same problem, `hint` appended to its words)."""
    maker = services.store.maker_of_video(video_id)
    task = services.store.get(maker) if maker else None
    if task is None or task.tenant != tenant:
        raise RequestInvalid([FieldProblem(field, "not_yours", NOT_YOUR_VIDEO + hint)])
    return task


def check_identify_face(services: Services, tenant: str, body: dict[str, Any]) -> None:
    """Before identify-face goes to Kling: its `video_id`, if it names one, is the tenant's."""
    if "video_id" in body:
        video_of_tenant(services, tenant, body["video_id"], "video_id", hint=_or_by_url("video_url"))


def remember_face_session(services: Services, tenant: str, session_id: str) -> None:
    """Identify-face answered `session_id` to `tenant`: only that tenant may name it, while Kling keeps it."""
    services.redis.set(services.keys.face_session(session_id), tenant, ex=FACE_SESSION_TTL_S)


def check_references(services: Services, tenant: str, type_name: str, body: dict[str, Any]) -> None:
    """Before a lip-sync or advanced lip-sync task is recorded: the video or face session it names is
    the tenant's (video-extend's video is checked with the rest of its rules, domain/video_extend.py)."""
    if type_name == LIP_SYNC and "video_id" in body["input"]:
        given = body["input"]["video_id"]
        video_of_tenant(services, tenant, given, "input.video_id", hint=_or_by_url("input.video_url"))
    if type_name == ADVANCED_LIP_SYNC:
        owner = text_or_none(services.redis.get(services.keys.face_session(body["session_id"])))
        if owner != tenant:
            raise RequestInvalid([FieldProblem("session_id", "not_yours", NOT_YOUR_SESSION)])


def _or_by_url(field: str) -> str:
    return f"; or send the video itself as {field}"
