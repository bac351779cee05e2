"""Kling's callbacks: checked, matched to their task, stored, then answered at once.

This is the one endpoint that takes load (every status change of every task, and their duplicates),
so it is served in front of Flask, as a WSGI middleware around the app (the way Flask's docs wrap
`app.wsgi_app`): werkzeug's Request and a plain WSGI answer, without Flask's request context, session,
hooks and dispatch, which cost more than the callback's own work. Everything else goes on to Flask.

The order of checks is the order of cost: the URL token (no I/O; remembered once verified), the
size, the Standard Webhooks signature, the JSON. Only a callback that passes them all touches Redis,
and it is answered 200 only after Redis has taken it; a Redis failure answers 503 so that a sender
that retries will. Every answer is in Kling's envelope with a request id, as the rest of the API's are.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import redis
from standardwebhooks import Webhook
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request

from webhook_service import logs, metrics
from webhook_service.callback_tokens import CALLBACK_PATH, external_id_from_token
from webhook_service.errors import (
    CODE_BAD_REQUEST,
    CODE_INTERNAL,
    CODE_NOT_FOUND,
    ApiError,
    json_object,
    reply,
    storage_unavailable,
)
from webhook_service.lifecycle import Services, record_news
from webhook_service.store import TaskNotFound
from webhook_service.tasks import Outcome, Task, UnknownCallbackShape, update_from_callback

log = logging.getLogger(__name__)

CODE_BAD_TOKEN = 1002
CODE_BAD_SIGNATURE = 1002
CODE_CONFLICT = 1201
_SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class CallbackEndpoint:
    """`POST /callbacks/kling?token=...`, in front of `app`, which gets every other request."""

    def __init__(self, services: Services, app: WSGIApp) -> None:
        self.services = services
        self.app = app
        secret = services.settings.kling_webhook_secret
        self.webhook = Webhook(secret) if secret else None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != CALLBACK_PATH:
            return self.app(environ, start_response)
        request_id = uuid.uuid4().hex
        logs.reset(request_id=request_id)
        shape = "unknown"
        try:
            if environ.get("REQUEST_METHOD") != "POST":
                message, allow = "callbacks are POSTed", [("Allow", "POST")]
                return reply(start_response, request_id, 405, CODE_BAD_REQUEST, message, headers=allow)
            request = Request(environ)
            external_task_id, body = self.checked_body(request)
            shape = metrics.callback_shape(body)
            task, outcome = self.record(request, external_task_id, body)
            metrics.count_callback(shape, outcome=outcome.value)
            data = {"outcome": outcome.value, "task_status": task.status.value}
            return reply(start_response, request_id, 200, 0, "OK", data)
        except Exception as error:  # every failure gets Kling's envelope, none a bare error page
            refusal = _as_api_error(error)
            metrics.count_callback(shape, refused_with=refusal.http_status)
            return reply(start_response, request_id, refusal.http_status, refusal.code, refusal.message)
        finally:
            logs.reset()

    def checked_body(self, request: Request) -> tuple[str, dict[str, Any]]:
        """The task the URL's token names and the body, once the size and the signature are right."""
        settings = self.services.settings
        external_task_id = external_id_from_token(settings, request.args.get("token", ""))
        if external_task_id is None:
            raise ApiError(403, CODE_BAD_TOKEN, "the callback URL's token is missing or invalid")
        logs.bind(external_task_id=external_task_id)

        request.max_content_length = settings.callback_max_bytes
        raw = request.get_data(cache=False)  # 413 when over the limit, even without Content-Length
        if self.webhook is not None:
            self._verify_signature(raw, request)
        return external_task_id, json_object(raw, "the callback body")

    def record(self, request: Request, external_task_id: str, body: dict[str, Any]) -> tuple[Task, Outcome]:
        """Match the body to the task and record it: the task afterwards, and what the news did."""
        try:
            update = update_from_callback(body)
        except UnknownCallbackShape as error:
            raise ApiError(400, CODE_BAD_REQUEST, f"not a Kling callback: {error}") from None
        if update.external_task_id and update.external_task_id != external_task_id:
            message = f"the body's external_task_id {update.external_task_id!r} is not this URL's task"
            raise ApiError(409, CODE_CONFLICT, message)

        def same_task(task: Task) -> None:
            self._check_task_id(task, update.task_id)

        detail = {"webhook_id": request.headers.get("webhook-id"), "body": body}
        try:
            return record_news(
                self.services, external_task_id, update, source="callback", detail=detail, check=same_task
            )
        except TaskNotFound:
            message = f"task {external_task_id!r} is not (or no longer) recorded"
            raise ApiError(404, CODE_NOT_FOUND, message) from None

    def _verify_signature(self, raw: bytes, request: Request) -> None:
        assert self.webhook is not None
        headers = {name: request.headers.get(name, "") for name in _SIGNATURE_HEADERS}
        try:
            self.webhook.verify(raw, headers, json_parse=False)
        except Exception as error:  # the library raises ValueError and friends on malformed headers too
            raise ApiError(401, CODE_BAD_SIGNATURE, f"webhook signature rejected: {error}") from None

    def _check_task_id(self, task: Task, task_id: str | None) -> None:
        """A valid token for one task with a body about another is a mistake somewhere: refuse it loudly.

        Only a task_id the task does not know yet needs a lookup: almost every callback names its own.
        """
        if not task_id or task_id == task.task_id or task_id in task.upstream_task_ids:
            return
        owner = self.services.store.external_id_for(task_id)
        if owner is not None and owner != task.external_task_id:
            raise ApiError(409, CODE_CONFLICT, f"task_id {task_id!r} belongs to another task")


def _as_api_error(error: Exception) -> ApiError:
    if isinstance(error, ApiError):
        return error
    if isinstance(error, RequestEntityTooLarge):
        return ApiError(413, CODE_BAD_REQUEST, f"the callback body is over the limit: {error.description}")
    if isinstance(error, redis.RedisError):
        return storage_unavailable(error)
    log.exception("callback failed")
    return ApiError(500, CODE_INTERNAL, "internal error")
