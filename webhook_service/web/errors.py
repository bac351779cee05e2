"""Errors the API answers with, always in Kling's envelope so a Kling client understands them.

`{"code", "message", "request_id"}` plus, for validation errors, `errors`: every problem with its
field path and a machine-readable code.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request

from webhook_service.domain.errors import InputsNotStored
from webhook_service.domain.problems import RequestInvalid

StartResponse = Callable[..., Any]

log = logging.getLogger(__name__)

# Kling's own codes, meaning what they mean there, so a Kling client reacts as it would to Kling.
CODE_NO_TOKEN = 1001
CODE_BAD_TOKEN = 1002  # a key, token, callback URL token or signature that does not check out
CODE_TOKEN_NOT_YET_VALID = 1003
CODE_TOKEN_EXPIRED = 1004
CODE_RATE_LIMITED = 1302  # try again shortly (Retry-After says when)
# Service codes outside Kling's table; Kling's own codes (1000-5002) keep their meaning.
CODE_NOT_FOUND = 1203
CODE_BAD_REQUEST = 1201
CODE_CONFLICT = 1201  # Kling has no code of its own for a conflict: its "invalid request" one
CODE_UNAVAILABLE = 5001
CODE_INTERNAL = 5000


class ApiError(Exception):
    def __init__(
        self,
        http_status: int,
        code: int,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = headers or {}


def storage_unavailable(error: Exception) -> ApiError:
    """What a Redis failure answers: 503, so that a client (or Kling) that retries will."""
    log.error("Redis unavailable: %s", type(error).__name__)
    return ApiError(503, CODE_UNAVAILABLE, "storage is unavailable, try again shortly")


def bad_body(code: str, message: str) -> ApiError:
    """A 400 about the body as a whole: the message, and the same as one `errors` entry (field "")."""
    return ApiError(400, CODE_BAD_REQUEST, message, errors=[{"field": "", "code": code, "message": message}])


def invalid_request(invalid: RequestInvalid, what: str = "invalid request") -> ApiError:
    """A refused body (or query: web/params.py), whatever the endpoint: the first problems in the
    message, every one in `errors`."""
    problems = [p.as_dict() for p in invalid.problems]
    summary = "; ".join(f"{p['field'] or 'body'}: {p['message']}" for p in problems[:3])
    if len(problems) > 3:
        summary += f"; and {len(problems) - 3} more (every problem is in `errors`)"
    return ApiError(400, CODE_BAD_REQUEST, f"{what}: {summary}", errors=problems)


def whole_body(incoming: Request, *, cache: bool = True) -> bytes:
    """The request's body, refused (RequestEntityTooLarge) when it is over `request.max_content_length`
    however it was sent. Werkzeug refuses a Content-Length over the limit before reading anything, but a
    body sent chunked (no Content-Length) it reads up to the limit and then stops without a word: the
    rest was dropped and the body judged on its first part, a 400 "not valid JSON" instead of a 413."""
    raw = incoming.get_data(cache=cache)
    limit = incoming.max_content_length
    at_the_limit = limit is not None and incoming.content_length is None and len(raw) >= limit
    if at_the_limit and incoming.environ["wsgi.input"].read(1):  # more than the limit was sent
        raise RequestEntityTooLarge()
    return raw


def json_object(raw: bytes, what: str, content_type: str | None) -> dict[str, Any]:
    """Parse a JSON object, turning every way a body can be bad into a 400 (never a 500) that says what
    was received: nothing, a form, text that is not JSON (and the Content-Type it came with, unless it
    said JSON), or JSON that is not an object.

    RecursionError is one of them: a few kilobytes of `[[[[...` exhaust the parser's stack.
    """
    if not raw.strip():
        raise bad_body("empty_body", f"{what} is empty: send a JSON object (Content-Type: application/json)")
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise bad_body(
            "not_json",
            f"{what} is a form ({media_type}): send a JSON object (Content-Type: application/json)",
        )
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise bad_body("invalid_json", f"{what} is not valid JSON{_sent_as(media_type)}: {reason}") from None
    if not isinstance(body, dict):
        raise bad_body("not_object", f"{what} must be a JSON object, not {_json_kind(body)}")
    return body


def _sent_as(media_type: str) -> str:
    """What a body that is not JSON came as, when its Content-Type did not say JSON: text/plain (curl's
    `-d` without a header sends a form; other clients send text) is the usual mistake."""
    if media_type == "application/json" or media_type.endswith("+json"):
        return ""
    return f" (Content-Type: {media_type[:60]})" if media_type else " (no Content-Type)"


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a number"


def request_id() -> str:
    if "request_id" not in g:
        g.request_id = uuid.uuid4().hex
    the_id: str = g.request_id
    return the_id


def envelope(code: int, message: str, data: Any = None, **extra: Any) -> dict[str, Any]:
    return _envelope(request_id(), code, message, data, **extra)


def reply(
    start_response: StartResponse,
    request_id: str,
    http_status: int,
    code: int,
    message: str,
    data: Any = None,
    *,
    headers: Iterable[tuple[str, str]] = (),
    errors: list[dict[str, Any]] | None = None,
) -> list[bytes]:
    """An answer in the envelope as plain WSGI, for the callback endpoint, which runs in front of Flask:
    it answers most of the service's requests, and a werkzeug Response took four times as long. An
    error's `errors` list goes with it, as from the rest of the API."""
    extra = {"errors": errors} if errors is not None else {}
    body = json.dumps(_envelope(request_id, code, message, data, **extra), separators=(",", ":")).encode()
    start_response(
        f"{http_status} {HTTP_STATUS_CODES[http_status]}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("X-Request-Id", request_id),
            *headers,
        ],
    )
    return [body]


def _envelope(request_id: str, code: int, message: str, data: Any = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "request_id": request_id}
    if data is not None:
        body["data"] = data
    body.update(extra)
    return body


def error_response(error: ApiError) -> tuple[Response, int]:
    extra = {"errors": error.errors} if error.errors is not None else {}
    response = jsonify(envelope(error.code, error.message, **extra))
    response.headers.update(error.headers)
    return response, error.http_status


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, error_response)

    @app.errorhandler(InputsNotStored)
    def inputs_not_stored(error: InputsNotStored) -> tuple[Response, int]:
        """The archive's own words (paths, buckets) go to the log; the client learns what to do."""
        log.error("create refused, its images could not be archived: %s", error)
        message = "the archive is unavailable: the request's images were not stored and nothing was recorded"
        return error_response(ApiError(503, CODE_UNAVAILABLE, f"{message}; try again shortly"))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        status = error.code or 500
        code = CODE_NOT_FOUND if status == 404 else CODE_BAD_REQUEST if status < 500 else CODE_INTERNAL
        message = error.description or error.name
        headers = {}
        if isinstance(error, NotFound):
            message = f"no such path: {request.method} {request.path} (the API is listed at /docs)"
        elif isinstance(error, MethodNotAllowed):
            allowed = sorted(set(error.valid_methods or []) - {"HEAD", "OPTIONS"})
            message = f"{request.method} is not allowed on {request.path}: use {' or '.join(allowed)}"
            headers = {"Allow": ", ".join(error.valid_methods or [])}
        return error_response(ApiError(status, code, message, headers=headers))

    @app.after_request
    def add_request_id(response: Response) -> Response:
        response.headers["X-Request-Id"] = request_id()
        return response
