"""What happens to a task: it is submitted, and news about it is recorded.

The web app and the workers share these two operations. Every piece of upstream news (create
answer, callback, poll) goes through `record_news`, so it takes the same state machine, leaves the
same kind of history entry and triggers the same follow-up work, whatever brought it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.client import Pipeline

from webhook_service.callback_tokens import callback_url_for
from webhook_service.config import Settings
from webhook_service.events import FOR_STATUS, EventType, raise_event
from webhook_service.kling import ClientPerProcess, KlingError
from webhook_service.queues import enqueue_archive
from webhook_service.storage import Storage, storage_from_url
from webhook_service.store import TaskStore
from webhook_service.tasks import Outcome, Status, StatusUpdate, Task, apply_update, update_from_kling_task

log = logging.getLogger(__name__)


@dataclass
class Services:
    """The long-lived objects one process needs, built once from the settings."""

    settings: Settings
    redis: redis.Redis
    store: TaskStore
    kling: ClientPerProcess
    storage: Storage

    @classmethod
    def build(cls, settings: Settings) -> Services:
        connection = redis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
        )
        storage = storage_from_url(
            settings.archive_url,
            s3_endpoint_url=settings.s3_endpoint_url or None,
            spool_dir=Path(settings.archive_spool_dir),
        )
        return cls(settings, connection, TaskStore(connection), ClientPerProcess(settings), storage)


def new_external_task_id() -> str:
    return f"kws-{uuid.uuid4().hex}"


def submit(services: Services, body: dict[str, Any]) -> Task:
    """Record the task, then send it upstream with our callback URL in place of the caller's.

    The record comes first so a callback that beats Kling's answer finds its task. Raises KlingError
    (after recording it on the task) when Kling refuses or cannot be reached.
    """
    external_task_id = body.get("external_task_id") or new_external_task_id()
    upstream_body = {
        **body,
        "external_task_id": external_task_id,
        "callback_url": callback_url_for(services.settings, external_task_id),
    }
    task = Task(
        external_task_id=external_task_id,
        model_name=body.get("model_name", "kling-v1"),
        client_callback_url=body.get("callback_url"),
        watermark_info=body.get("watermark_info"),
    )
    services.store.create(task, request={k: v for k, v in upstream_body.items() if k != "callback_url"})
    client = services.kling.get()
    try:
        data = client.create_image2video(upstream_body)
    except KlingError as error:
        data = _find_if_created(services, external_task_id, error)
        if data is None:
            _record_refusal(services, external_task_id, error)
            raise
    task, _ = record_news(services, external_task_id, update_from_kling_task(data), source="create")
    return task


def _find_if_created(services: Services, external_task_id: str, error: KlingError) -> dict[str, Any] | None:
    """After an error that may hide a created task (5000, 5002, timeout), ask Kling whether it exists."""
    if not error.maybe_created:
        return None
    try:
        return services.kling.get().get_image2video(external_task_id)
    except KlingError:
        return None


def _record_refusal(services: Services, external_task_id: str, error: KlingError) -> None:
    """Show on the task why it has no upstream twin.

    A refusal that certainly created nothing makes the task `rejected`; after an error that may have
    created it upstream the task stays `queued`, so a late callback can still complete it.
    """

    def change(task: Task) -> Outcome:
        task.error = error.as_dict()
        task.status_msg = error.message
        if error.maybe_created:
            return Outcome.DUPLICATE
        task.status = Status.REJECTED
        return Outcome.APPLIED

    log.warning("create refused for %s: %s", external_task_id, error)
    services.store.update(
        external_task_id,
        change,
        history={"event": "create_failed", "source": "create", "error": error.as_dict()},
        after_commit=lambda pipe, _, task: raise_event(
            services.redis, pipe, task.external_task_id, EventType.FAILED
        ),
    )


def record_news(
    services: Services,
    external_task_id: str,
    update: StatusUpdate,
    *,
    source: str,
    detail: dict[str, Any] | None = None,
) -> tuple[Task, Outcome]:
    """Apply one piece of upstream news to the task, atomically with the work it triggers."""

    def follow_up(pipe: Pipeline, before: Task, after: Task) -> None:
        raise_event(services.redis, pipe, after.external_task_id, FOR_STATUS[after.status])
        if after.status is Status.SUCCEED:
            retry_base_s = services.settings.archive_retry_base_s
            enqueue_archive(services.redis, after.external_task_id, retry_base_s=retry_base_s, pipeline=pipe)

    history = {"event": "status", "source": source, "reported_status": update.status.value, **(detail or {})}
    task, outcome = services.store.update(
        external_task_id, lambda t: apply_update(t, update), history=history, after_commit=follow_up
    )
    log.info(
        "%s for %s reported %s: %s, task now %s",
        source,
        external_task_id,
        update.status,
        outcome,
        task.status,
    )
    return task, outcome
