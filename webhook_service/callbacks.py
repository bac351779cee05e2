"""Kling's callbacks: checked, matched to their task, stored, then answered at once.

The order of checks is the order of cost: the URL token (no I/O), the size, the Standard Webhooks
signature, the JSON. Only a callback that passes them all touches Redis, and it is answered 200
only after Redis has taken it; a Redis failure answers 503 so that a sender that retries will.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from standardwebhooks import Webhook

from webhook_service import logs, metrics
from webhook_service.callback_tokens import CALLBACK_PATH, external_id_from_token
from webhook_service.errors import CODE_BAD_REQUEST, CODE_NOT_FOUND, ApiError, envelope, json_object
from webhook_service.lifecycle import Services, current_services, record_news
from webhook_service.store import TaskNotFound
from webhook_service.tasks import Task, UnknownCallbackShape, update_from_callback

bp = Blueprint("callbacks", __name__)

CODE_BAD_TOKEN = 1002
CODE_BAD_SIGNATURE = 1002
CODE_CONFLICT = 1201


@bp.post(CALLBACK_PATH)
@metrics.counted_callback
def kling_callback() -> Response:
    services = current_services()
    settings = services.settings
    external_task_id = external_id_from_token(settings, request.args.get("token", ""))
    if external_task_id is None:
        raise ApiError(403, CODE_BAD_TOKEN, "the callback URL's token is missing or invalid")
    logs.bind(external_task_id=external_task_id)

    request.max_content_length = settings.callback_max_bytes
    raw = request.get_data(cache=False)  # 413 when over the limit, even without Content-Length
    if settings.kling_webhook_secret:
        _verify_signature(settings.kling_webhook_secret, raw)
    body = json_object(raw, "the callback body")
    metrics.note_callback(shape=metrics.callback_shape(body))
    try:
        update = update_from_callback(body)
    except UnknownCallbackShape as error:
        raise ApiError(400, CODE_BAD_REQUEST, f"not a Kling callback: {error}") from None
    if update.external_task_id and update.external_task_id != external_task_id:
        raise ApiError(
            409,
            CODE_CONFLICT,
            f"the body's external_task_id {update.external_task_id!r} is not this URL's task",
        )

    def same_task(task: Task) -> None:
        _check_task_id(services, task, update.task_id)

    detail = {"webhook_id": request.headers.get("webhook-id"), "body": body}
    try:
        task, outcome = record_news(
            services, external_task_id, update, source="callback", detail=detail, check=same_task
        )
    except TaskNotFound:
        raise ApiError(
            404, CODE_NOT_FOUND, f"task {external_task_id!r} is not (or no longer) recorded"
        ) from None
    metrics.note_callback(outcome=outcome.value)
    return jsonify(envelope(0, "OK", {"outcome": outcome.value, "task_status": task.status.value}))


def _verify_signature(secret: str, raw: bytes) -> None:
    try:
        Webhook(secret).verify(raw, dict(request.headers), json_parse=False)
    except Exception as error:  # the library raises ValueError and friends on malformed headers too
        raise ApiError(401, CODE_BAD_SIGNATURE, f"webhook signature rejected: {error}") from None


def _check_task_id(services: Services, task: Task, task_id: str | None) -> None:
    """A valid token for one task with a body about another is a mistake somewhere: refuse it loudly.

    Only a task_id the task does not know yet needs a lookup: almost every callback names its own.
    """
    if not task_id or task_id == task.task_id or task_id in task.upstream_task_ids:
        return
    owner = services.store.external_id_for(task_id)
    if owner is not None and owner != task.external_task_id:
        raise ApiError(409, CODE_CONFLICT, f"task_id {task_id!r} belongs to another task")
