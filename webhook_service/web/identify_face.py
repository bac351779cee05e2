"""`POST /v1/videos/identify-face` (and `/kling/v1/...`): Kling's face identification, passed through.

Kling answers it at once, with no task: a `session_id` and the faces it found (`face_data[{face_id,
face_image, start_time, end_time}]`), which an advanced lip-sync task then names. So the service
checks the body as Kling documents it (domain/lip_sync_rules.py: exactly one of video_id and
video_url), sends it upstream with the account's credentials through the one Kling client, and answers
Kling's envelope unchanged, its request_id included (the one Kling's support knows).

It makes no task and takes no slot of the account's concurrency, which Kling counts in tasks. Tenants
share the account, so what it names and what it answers are kept to the tenant (domain/ownership.py):
a `video_id` must be a video of the tenant's own tasks (another tenant's is refused exactly as an
unknown one, before Kling is asked; a `video_url` is the caller's own), made within Kling's 30 days and
at most 60 s long, as Kling documents, and the session Kling answers
is recorded as the tenant's, the only one whose advanced lip-sync may then name it. One log line says
who asked and what came back. A refusal by Kling is answered with Kling's status, code and message, as
a refused create is; no answer at all is a 502. Waiting for Kling's answer holds a web thread, so it
takes a place in the process's waiting budget, beside synchronous creates (web/waiting.py): beyond it,
429 at once.
"""

from __future__ import annotations

import logging

from flask import Response, jsonify, request

from webhook_service.domain.body_rules import validate_body
from webhook_service.domain.lip_sync_rules import IDENTIFY_FACE
from webhook_service.domain.ownership import identify_face_problems, remember_face_session
from webhook_service.domain.problems import RequestInvalid
from webhook_service.integrations.kling import KlingError, KlingTransportError
from webhook_service.web import waiting
from webhook_service.web.auth import current_scope
from webhook_service.web.context import current_services as services
from webhook_service.web.errors import (
    CODE_INTERNAL,
    CODE_RATE_LIMITED,
    ApiError,
    invalid_request,
    json_object,
    whole_body,
)

PATH = "/v1/videos/identify-face"

log = logging.getLogger(__name__)


def identify_face() -> tuple[Response, int]:
    body = json_object(whole_body(request), "the request body", request.content_type)
    settings = services().settings
    tenant = current_scope().tenant
    try:
        clean = validate_body(
            IDENTIFY_FACE,
            body,
            extra_fields=settings.kling_extra_fields,
            allowed_hosts=settings.notify_allowed_hosts,
        )
    except RequestInvalid as invalid:  # with the video's problems too, all in one answer
        more = identify_face_problems(services(), tenant, body)
        raise invalid_request(RequestInvalid([*invalid.problems, *more])) from None
    if problems := identify_face_problems(services(), tenant, clean):
        raise invalid_request(RequestInvalid(problems))
    if not waiting.budget(waiting.SUBMITS).acquire(blocking=False):
        raise ApiError(
            429,
            CODE_RATE_LIMITED,
            "this web process is already waiting on Kling for as many requests as it may "
            f"(SUBMIT_WAITING_MAX={settings.submit_waiting_max}); try again in a second",
            headers={"Retry-After": "1"},
        )
    try:
        answer = services().kling.get().answer(PATH, clean)
    except KlingError as error:
        log.info("identify-face for tenant %s not answered: %s", tenant, error)
        if isinstance(error, KlingTransportError) and not error.http_status:
            raise ApiError(502, CODE_INTERNAL, f"Kling did not answer: {error.message}") from None
        http = error.http_status if error.http_status and error.http_status >= 400 else 502
        raise ApiError(http, error.code if error.code is not None else CODE_INTERNAL, error.message) from None
    finally:
        waiting.budget(waiting.SUBMITS).release()
    data = answer.get("data")
    faces = data.get("face_data") if isinstance(data, dict) else None
    session = data.get("session_id") if isinstance(data, dict) else None
    if isinstance(session, str) and session:
        remember_face_session(services(), tenant, session)
    log.info(
        "identify-face for tenant %s: session %s, %s face(s)",
        tenant,
        session,
        len(faces) if isinstance(faces, list) else "no",
    )
    return jsonify(answer), 200
