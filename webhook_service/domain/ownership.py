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
* **What Kling documents of that video** is checked from the same task (domain/kling_videos.py): for
  lip-sync and identify-face, made within the last 30 days, and 5 to 10 s long for lip-sync, at most
  60 s for identify-face (video-extend's own rules are domain/video_extend.py's).
* **A face session** (advanced lip-sync's `session_id`) must be one identify-face answered to the same
  tenant. Each is recorded when Kling answers (`face-session:<id>` -> tenant) with a Redis TTL of the
  time Kling keeps a session, so nothing is left behind for retention to prune. A session the service
  did not hand out, or has forgotten (past its TTL, or a lost Redis), is refused like another tenant's:
  identify the faces again.

Each check returns its problems rather than raising them, and reads the body as sent, looking only at a
field that is well-formed (a non-empty string): so a body with other problems gets these too, in the
same answer (domain/store_checks.py).
"""

from __future__ import annotations

from typing import Any, TypeGuard

from webhook_service.domain.advanced_lip_sync_rules import TYPE_NAME as ADVANCED_LIP_SYNC
from webhook_service.domain.kling_videos import expired, length_problem, video_in
from webhook_service.domain.lip_sync_rules import TYPE_NAME as LIP_SYNC
from webhook_service.domain.problems import FieldProblem
from webhook_service.domain.tasks import Task
from webhook_service.replies import text_or_none
from webhook_service.services import Services

# How long Kling keeps an identify-face session: 24 hours, the one figure any copy of its reference
# gives (docs/kling-endpoints.md). A session Kling has dropped is refused by Kling itself.
FACE_SESSION_TTL_S = 24 * 3600
# The lengths Kling documents for a video named by id (shortest s, longest s, in its words):
# lip-sync's "videos of 5 to 10 s generated within 30 days", identify-face's "no more than 60 seconds".
LIP_SYNC_SECONDS = (5.0, 10.0, "Kling lip-syncs videos of 5 to 10 s only")
IDENTIFY_FACE_SECONDS = (0.0, 60.0, "Kling searches videos of up to 60 s only")

NOT_YOUR_VIDEO = (
    "is not a video of one of your tasks: give the id of a video in the task_result of a task you "
    "created through this service and still kept here"
)
NOT_YOUR_SESSION = (
    "is not a face session of yours: give the session_id that POST /v1/videos/identify-face "
    "answered you within the last 24 hours"
)


def tenant_video(services: Services, tenant: str, video_id: str) -> Task | None:
    """The tenant's task whose result is this video; None when there is none, whether the video is
    another tenant's or unknown."""
    maker = services.store.maker_of_video(video_id)
    task = services.store.get(maker) if maker else None
    return task if task is not None and task.tenant == tenant else None


def not_yours(field: str, hint: str = "") -> FieldProblem:
    """The one answer for a video that is not the caller's, whoever's it is (`hint` appended)."""
    return FieldProblem(field, "not_yours", NOT_YOUR_VIDEO + hint)


def _video_problems(
    services: Services, tenant: str, video_id: str, field: str, rule: tuple[float, float, str], use: str
) -> list[FieldProblem]:
    """The video is the tenant's, made within 30 days, and of the length `rule` gives (shortest, longest,
    Kling's words)."""
    task = tenant_video(services, tenant, video_id)
    if task is None:
        url_field = field.removesuffix("video_id") + "video_url"
        return [not_yours(field, f"; or send the video itself as {url_field}")]
    shortest, longest, words = rule
    found = (
        expired(task, field, use),
        length_problem(video_in(task, video_id), field, shortest, longest, words),
    )
    return [problem for problem in found if problem is not None]


def identify_face_problems(services: Services, tenant: str, body: dict[str, Any]) -> list[FieldProblem]:
    """Before identify-face goes to Kling: its `video_id`, if it names one, is a video of the tenant's
    Kling can still read faces in."""
    video_id = body.get("video_id")
    if not _named(video_id):
        return []
    return _video_problems(
        services, tenant, video_id, "video_id", IDENTIFY_FACE_SECONDS, "search it for faces"
    )


def remember_face_session(services: Services, tenant: str, session_id: str) -> None:
    """Identify-face answered `session_id` to `tenant`: only that tenant may name it, while Kling keeps it."""
    services.redis.set(services.keys.face_session(session_id), tenant, ex=FACE_SESSION_TTL_S)


def reference_problems(
    services: Services, tenant: str, type_name: str, body: dict[str, Any]
) -> list[FieldProblem]:
    """Before a lip-sync or advanced lip-sync task is recorded: the video or face session it names is
    the tenant's, and the video one Kling can lip-sync (video-extend's video is checked with the rest of
    its rules, domain/video_extend.py)."""
    given = body.get("input")
    if type_name == LIP_SYNC and isinstance(given, dict) and _named(video_id := given.get("video_id")):
        return _video_problems(services, tenant, video_id, "input.video_id", LIP_SYNC_SECONDS, "lip-sync it")
    session_id = body.get("session_id")
    if type_name == ADVANCED_LIP_SYNC and _named(session_id):
        owner = text_or_none(services.redis.get(services.keys.face_session(session_id)))
        if owner != tenant:
            return [FieldProblem("session_id", "not_yours", NOT_YOUR_SESSION)]
    return []


def _named(value: object) -> TypeGuard[str]:
    """A well-formed id: worth looking up (a malformed one is reported by the body's own rules)."""
    return isinstance(value, str) and bool(value)
