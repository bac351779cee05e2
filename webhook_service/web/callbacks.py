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

from webhook_service.domain.callback_tokens import CALLBACK_PATH, task_from_token
from webhook_service.domain.callbacks import receive_callback
from webhook_service.domain.errors import TaskIdConflict, TaskNotFound, UnknownCallbackShape
from webhook_service.domain.tasks import callback_shape
from webhook_service.integrations import logs, metrics
from webhook_service.services import Services
from webhook_service.web.errors import (
    CODE_BAD_REQUEST,
    CODE_BAD_TOKEN,
    CODE_CONFLICT,
    CODE_INTERNAL,
    CODE_NOT_FOUND,
    ApiError,
    json_object,
    reply,
    storage_unavailable,
    whole_body,
)

log = logging.getLogger(__name__)

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
            (external_task_id, type_name), body, size = self.checked_body(request)
            shape = callback_shape(body)
            webhook_id = request.headers.get("webhook-id")
            task, outcome = receive_callback(
                self.services,
                external_task_id,
                body,
                webhook_id=webhook_id,
                body_bytes=size,
                type_name=type_name,
            )
            metrics.count_callback(shape, tenant=task.tenant, outcome=outcome.value)
            data = {"outcome": outcome.value, "task_status": task.status.value}
            return reply(start_response, request_id, 200, 0, "OK", data)
        except Exception as error:  # every failure gets Kling's envelope, none a bare error page
            refusal = _as_api_error(error)
            metrics.count_callback(shape, refused_with=refusal.http_status)
            return reply(
                start_response,
                request_id,
                refusal.http_status,
                refusal.code,
                refusal.message,
                errors=refusal.errors,
            )
        finally:
            logs.reset()

    def checked_body(self, request: Request) -> tuple[tuple[str, str], dict[str, Any], int]:
        """The task the URL's token names (and its type), the body and its size, once the size and the
        signature are right."""
        settings = self.services.settings
        named = task_from_token(settings, request.args.get("token", ""))
        if named is None:
            raise ApiError(403, CODE_BAD_TOKEN, "the callback URL's token is missing or invalid")
        logs.bind(external_task_id=named[0])

        request.max_content_length = settings.callback_max_bytes
        try:
            raw = whole_body(request, cache=False)  # refused when over the limit, even sent chunked
        except RequestEntityTooLarge:
            limit = f"{settings.callback_max_bytes:,} bytes"
            raise ApiError(413, CODE_BAD_REQUEST, f"the callback body is over the limit of {limit}") from None
        if self.webhook is not None:
            self._verify_signature(raw, request)
        return named, json_object(raw, "the callback body", request.content_type), len(raw)

    def _verify_signature(self, raw: bytes, request: Request) -> None:
        assert self.webhook is not None
        headers = {name: request.headers.get(name, "") for name in _SIGNATURE_HEADERS}
        try:
            self.webhook.verify(raw, headers, json_parse=False)
        except Exception as error:  # the library raises ValueError and friends on malformed headers too
            raise ApiError(401, CODE_BAD_TOKEN, f"webhook signature rejected: {error}") from None


def _as_api_error(error: Exception) -> ApiError:
    if isinstance(error, ApiError):
        return error
    if isinstance(error, UnknownCallbackShape):
        return ApiError(400, CODE_BAD_REQUEST, f"not a Kling callback: {error}")
    if isinstance(error, TaskIdConflict):
        return ApiError(409, CODE_CONFLICT, str(error))
    if isinstance(error, TaskNotFound):
        return ApiError(404, CODE_NOT_FOUND, f"task {error.args[0]!r} is not (or no longer) recorded")
    if isinstance(error, redis.RedisError):
        return storage_unavailable(error)
    log.exception("callback failed")
    return ApiError(500, CODE_INTERNAL, "internal error")
