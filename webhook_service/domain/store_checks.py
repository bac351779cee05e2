"""The checks of a create body that need the store, run beside the body's own rules, so a client hears of
every problem in one answer.

A body's own rules (domain/body_rules.py, through domain/task_types.py) need nothing but the body. Some
of what Kling documents needs what the service has recorded: that the video or face session a body
names is the caller's, and one Kling can use (domain/ownership.py, domain/video_extend.py), and that the
caller has not used the external_task_id already. Those are checked when the task is recorded
(domain/submission.py `accept`); when the body also breaks its own rules, `validated` runs them as well,
on every field that is well-formed, and reports everything together: a misspelt field and a video that
is not the caller's come back in the same 400, rather than the second only once the first is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeGuard

from pydantic import TypeAdapter, ValidationError

from webhook_service.domain.field_types import TaskId
from webhook_service.domain.ownership import reference_problems
from webhook_service.domain.problems import FieldProblem, RequestInvalid
from webhook_service.domain.task_types import task_type
from webhook_service.domain.tasks import Task
from webhook_service.domain.tenants import upstream_id
from webhook_service.domain.video_extend import extension_problems
from webhook_service.domain.video_extend_rules import NAME as VIDEO_EXTEND
from webhook_service.domain.video_extend_rules import VideoId
from webhook_service.services import Services

_VIDEO_ID: TypeAdapter[str] = TypeAdapter(VideoId)
_TASK_ID: TypeAdapter[str] = TypeAdapter(TaskId)
TAKEN = "is already used by another task"


@dataclass(frozen=True)
class References:
    """What a body names, as the store knows it: the task whose video a video-extend continues (None
    for other types, or when the video is not the caller's), and every problem with what it names."""

    parent: Task | None
    problems: list[FieldProblem]


def references(services: Services, tenant: str, type_name: str, body: dict[str, Any]) -> References:
    """The video or face session the body names, checked for the tenant: video-extend's `video_id`,
    lip-sync's `input.video_id`, advanced lip-sync's `session_id` (each only when well-formed)."""
    parent: Task | None = None
    problems: list[FieldProblem] = []
    if type_name == VIDEO_EXTEND and _fits(video_id := body.get("video_id"), _VIDEO_ID):
        parent, problems = extension_problems(services, tenant, video_id)
    return References(parent, problems + reference_problems(services, tenant, type_name, body))


def taken(services: Services, tenant: str, type_name: str, body: dict[str, Any]) -> list[FieldProblem]:
    """`taken` when the body's external_task_id (a unified body's `options.external_task_id`) is one of
    the tenant's tasks already."""
    unified = task_type(type_name).unified
    holder = body.get("options") if unified else body
    given = holder.get("external_task_id") if isinstance(holder, dict) else None
    if not _fits(given, _TASK_ID) or services.store.get(upstream_id(tenant, given)) is None:
        return []
    return [FieldProblem("options.external_task_id" if unified else "external_task_id", "taken", TAKEN)]


def validated(
    services: Services,
    tenant: str,
    type_name: str,
    body: object,
    *,
    extra_fields: frozenset[str],
    allowed_hosts: frozenset[str],
) -> dict[str, Any]:
    """The body as its type records it (domain/task_types.py `validate`), or RequestInvalid listing its
    own problems and, for a body that has some, the store's too. A body without any of its own is
    checked against the store when it is recorded (`accept`), once."""
    try:
        return task_type(type_name).validate(body, extra_fields=extra_fields, allowed_hosts=allowed_hosts)
    except RequestInvalid as invalid:
        if not isinstance(body, dict):
            raise
        named = references(services, tenant, type_name, body)
        raise RequestInvalid(
            [*invalid.problems, *named.problems, *taken(services, tenant, type_name, body)]
        ) from None


def _fits(value: object, adapter: TypeAdapter[str]) -> TypeGuard[str]:
    """Whether `value` is a well-formed id for the field: only then is it worth looking up."""
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True
