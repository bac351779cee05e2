"""Getting a task to Kling exactly once, within the account's concurrency.

`accept` records the task and queues it; `dispatch` sends queued tasks upstream while slots are free,
each tenant's oldest first, the tenants in weighted turns (domain/admission.py). Anyone may call
`dispatch`: the request thread that wants its answer, a worker woken when a slot frees, the
reconciliation pass. A create that may have reached Kling despite an error (5000, 5002, timeout) is
looked up by external_task_id before it is ever sent again, so nothing is created twice upstream.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from redis.client import Pipeline

from webhook_service.domain.callback_tokens import callback_url_for
from webhook_service.domain.errors import InputUnreadable, TaskExists
from webhook_service.domain.events import EventType
from webhook_service.domain.inputs import store_inputs, with_inputs, write_manifest
from webhook_service.domain.lifecycle import record_news, release
from webhook_service.domain.problems import RequestInvalid
from webhook_service.domain.retention import schedule_removal
from webhook_service.domain.store_checks import references
from webhook_service.domain.task_types import Pack, task_type
from webhook_service.domain.tasks import DEFAULT_TYPE, Outcome, Status, Task, update_from_kling_task
from webhook_service.domain.tenants import DEFAULT_TENANT, upstream_id
from webhook_service.domain.unified import query_upstream
from webhook_service.domain.usage import Transition
from webhook_service.domain.video_extend import link_to_parent
from webhook_service.integrations.kling import KlingError
from webhook_service.jobs import enqueue_dispatch
from webhook_service.notify.routing import raise_event
from webhook_service.services import Services

log = logging.getLogger(__name__)

WAIT_POLL_S = 0.05


def new_external_task_id() -> str:
    return f"kws-{uuid.uuid4().hex}"


def accept(
    services: Services, body: dict[str, Any], tenant: str = DEFAULT_TENANT, type_name: str = DEFAULT_TYPE
) -> Task:
    """Record the task (status `queued`) and put it in the submission queue, in one transaction.

    The task is `tenant`'s, of type `type_name` (domain/task_types.py), recorded under its upstream id
    (domain/tenants.py): the client's external_task_id must be unique within its tenant only.

    The record comes first so a callback that beats Kling's answer finds its task. Its Base64 images
    are written to the archive before that (domain/inputs.py), so Redis keeps only references to them.
    Raises TaskExists, or InputsNotStored when the archive refuses them (nothing is recorded then);
    RequestInvalid for a body naming a video or face session that is not the tenant's, or a video Kling
    cannot use as asked (domain/store_checks.py): nothing is recorded or sent then.
    """
    external_task_id = upstream_id(tenant, body.get("external_task_id") or new_external_task_id())
    task = Task(
        external_task_id=external_task_id,
        tenant=tenant,
        type=type_name,
        model_name=task_type(type_name).model_of(body),  # usage counts by it
        client_callback_url=body.get("callback_url"),
        watermark_info=body.get("watermark_info"),
    )
    named = references(services, tenant, type_name, body)
    if named.problems:
        raise RequestInvalid(named.problems)
    if named.parent is not None:
        link_to_parent(task, named.parent, body["video_id"])
    request = {**{k: v for k, v in body.items() if k != "callback_url"}, "external_task_id": external_task_id}
    if body.get("external_task_id") and services.store.get(external_task_id) is not None:
        raise TaskExists(external_task_id)  # refused before its images are written, not after
    request = store_inputs(services.storage, task, request)
    kind = task_type(type_name)
    units = kind.slots_needed(body)
    services.store.create(
        task,
        request,
        also=lambda pipe: services.admission.enqueue(
            pipe, external_task_id, tenant, pack=kind.pack, units=units
        ),
    )
    write_manifest(services.storage, task, request)
    return task


def submit_and_wait(
    services: Services,
    body: dict[str, Any],
    wait_s: float,
    tenant: str = DEFAULT_TENANT,
    type_name: str = DEFAULT_TYPE,
) -> Task:
    """Accept the task, then help the queue along for up to `wait_s` until it has left the queue."""
    task = accept(services, body, tenant, type_name)
    deadline = time.monotonic() + wait_s
    while True:
        dispatch(services)
        current = services.store.get(task.external_task_id) or task
        if current.status is not Status.QUEUED or time.monotonic() >= deadline:
            return current
        time.sleep(WAIT_POLL_S)


def dispatch(services: Services) -> int:
    """Send queued tasks upstream while their pack has slots free; returns how many were taken from the
    queues. Each resource pack is taken from on its own: one that is full or paused holds back none
    of the others."""
    sent = 0
    for pack in Pack:
        while (external_task_id := services.admission.take_next(pack)) is not None:
            sent += 1
            try:
                send_upstream(services, external_task_id)
            except Exception:
                log.exception("sending %s upstream failed; it goes back to the queue", external_task_id)
                services.admission.put_back(external_task_id, pack)
                raise
    return sent


def send_upstream(services: Services, external_task_id: str) -> None:
    """Create the task at Kling; the caller holds a slot for it."""
    task = services.store.get(external_task_id)
    request = services.store.request(external_task_id)
    if task is None or request is None or task.status is not Status.QUEUED:
        # Answered meanwhile (a callback, a lookup): nothing to send. An open task keeps its slot.
        if task is None or task.status.terminal:
            pipe = services.redis.pipeline(transaction=True)
            release(services, pipe, external_task_id)
            pipe.execute()
        return
    client = services.kling.get()
    try:
        data = _existing(services, task) if task.submit_uncertain else None
        if data is None:
            sent = with_inputs(services.storage, request)
            callback_url = callback_url_for(services.settings, external_task_id, task.type)
            body = task_type(task.type).upstream_body(sent, callback_url)
            _count_attempt(services, external_task_id)
            data = client.create(task_type(task.type).path, body)
    except KlingError as error:
        uncertain = error.maybe_created or task.submit_uncertain
        data = _look_up(services, task) if uncertain else None
        if data is None:
            _refused(services, task, error, uncertain=uncertain)
            return
    except InputUnreadable as error:  # Kling was not asked: nothing can exist upstream because of it
        _refused(services, task, error, uncertain=False)
        return
    services.admission.resume(task_type(task.type).pack)
    update = update_from_kling_task(data, max_outputs=services.settings.callback_max_outputs)
    record_news(services, external_task_id, update, source="create")


def _existing(services: Services, task: Task) -> dict[str, Any] | None:
    """After an uncertain create: the upstream task if it exists (None: it does not, send it)."""
    try:
        return query_upstream(services.kling.get(), task, task.external_task_id)
    except KlingError as error:
        if error.code == 1203 or error.http_status == 404:
            return None
        raise


def _look_up(services: Services, task: Task) -> dict[str, Any] | None:
    try:
        return query_upstream(services.kling.get(), task, task.external_task_id)
    except KlingError:
        return None


def _count_attempt(services: Services, external_task_id: str) -> None:
    def change(task: Task) -> Outcome:
        task.submit_attempts += 1
        return Outcome.DUPLICATE

    services.store.update(external_task_id, change)


def _refused(services: Services, task: Task, error: KlingError | InputUnreadable, *, uncertain: bool) -> None:
    """Record why Kling did not take the task; retry later unless the refusal is final.

    A task that may exist upstream is never rejected: only a lookup can settle it. A refusal for now
    pauses the task's resource pack only: Kling counts each pack's open tasks apart.
    """
    external_task_id = task.external_task_id
    pack = task_type(task.type).pack
    if error.retryable or uncertain:
        delay = services.admission.pause(pack)
        enqueue_dispatch(services.redis, f"pause-{time.time():.3f}", delay_s=delay + 1)
        log.warning("create of %s deferred %.1f s: %s", external_task_id, delay, error)
        _note_error(services, external_task_id, error, uncertain=uncertain)
        services.admission.put_back(external_task_id, pack)
        return
    log.warning("create of %s refused: %s", external_task_id, error)
    transition = Transition()

    def reject(task: Task) -> Outcome:
        transition.capture(task)
        task.error = error.as_dict()
        task.status_msg = error.message
        task.status = Status.REJECTED
        return Outcome.APPLIED

    def finish(pipe: Pipeline, task: Task) -> None:
        release(services, pipe, task.external_task_id)
        schedule_removal(services, pipe, task.external_task_id)
        raise_event(services.redis, pipe, services.settings, services.keys, task, EventType.FAILED)
        transition.record(pipe, services.keys, task)

    history = {"event": "create_failed", "source": "create", "error": error.as_dict()}
    task, outcome = services.store.update(external_task_id, reject, history=history, after_commit=finish)
    transition.count(task, outcome)


def _note_error(
    services: Services, external_task_id: str, error: KlingError | InputUnreadable, *, uncertain: bool
) -> None:
    def change(task: Task) -> Outcome:
        task.error = error.as_dict()
        task.submit_uncertain = task.submit_uncertain or uncertain
        return Outcome.DUPLICATE

    history = {"event": "create_deferred", "source": "create", "error": error.as_dict()}
    services.store.update(external_task_id, change, history=history)
