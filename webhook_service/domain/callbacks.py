"""A Kling callback matched to its task and recorded, whatever carried it.

The callback URL's token names the task (domain/callback_tokens.py); the body must agree with it. A
body about another task is a mistake somewhere and is refused loudly (`TaskIdConflict`), with nothing
recorded: that check runs inside the store's transaction, on the task as stored. A valid token for a
task the service no longer knows (Redis lost or flushed) records the task again first
(domain/recovery.py): the token proves the service made it, and the body says where Kling has got.
"""

from __future__ import annotations

from typing import Any

from webhook_service.domain.bounds import UPSTREAM_IDS_MAX, shown_webhook_id, stored_body
from webhook_service.domain.errors import TaskIdConflict, TaskNotFound
from webhook_service.domain.lifecycle import record_news
from webhook_service.domain.recovery import recreate
from webhook_service.domain.tasks import Outcome, Task, update_from_callback
from webhook_service.services import Services


def receive_callback(
    services: Services,
    external_task_id: str,
    body: dict[str, Any],
    *,
    webhook_id: str | None = None,
    body_bytes: int | None = None,
    type_name: str | None = None,
) -> tuple[Task, Outcome]:
    """Record the callback for the task its URL names: the task afterwards, and what the news did.
    `type_name` is the task's type as the URL's token says, for a task that must be recorded again.

    Raises UnknownCallbackShape, TaskIdConflict, or TaskNotFound for a task removed by retention
    (domain/errors.py).
    """
    update = update_from_callback(body, max_outputs=services.settings.callback_max_outputs)
    if update.external_task_id and update.external_task_id != external_task_id:
        raise TaskIdConflict(
            f"the body's external_task_id {update.external_task_id!r} is not this URL's task"
        )

    def same_task(task: Task) -> None:
        """Only a task_id the task does not know yet needs a lookup: almost every callback names its own."""
        task_id = update.task_id
        if not task_id or task_id == task.task_id or task_id in task.upstream_task_ids:
            return
        if len(task.upstream_task_ids) >= UPSTREAM_IDS_MAX:  # each one is kept, and keyed, for good
            raise TaskIdConflict(f"the task already answers to {UPSTREAM_IDS_MAX} other task_ids")
        owner = services.store.external_id_for(task_id)
        if owner is not None and owner != task.external_task_id:
            raise TaskIdConflict(f"task_id {task_id!r} belongs to another task")

    detail = {"webhook_id": shown_webhook_id(webhook_id), **stored_body(body, received_bytes=body_bytes)}

    def record() -> tuple[Task, Outcome]:
        return record_news(
            services, external_task_id, update, source="callback", detail=detail, check=same_task
        )

    try:
        return record()
    except TaskNotFound:
        watermark_info = body.get("watermark_info")
        watermark_info = watermark_info if isinstance(watermark_info, dict) else None
        recreate(
            services,
            external_task_id,
            update,
            source="callback",
            watermark_info=watermark_info,
            type_name=type_name,
        )
        return record()
