"""Logs: JSON lines with the ids of the task and request they are about, and no secret in any of them."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import SECRET_KEY, SIM_TOKEN, Service
from tests.support import wait_for
from webhook_service.domain.callback_tokens import callback_url_for
from webhook_service.integrations import logs

IMAGE_B64 = base64.b64encode(os.urandom(3000)).decode()


class Captured:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines()]


@pytest.fixture
def captured() -> Iterator[Captured]:
    """The service's own handler (formatter and redaction) on the root logger, writing to a buffer."""
    stream = io.StringIO()
    handler = logs.json_handler(stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield Captured(stream)
    root.removeHandler(handler)
    root.setLevel(level)
    logs.reset()


def test_secrets_and_base64_never_reach_a_log_line(captured: Captured) -> None:
    logs.add_secrets(["configured-secret-value"])
    callback_url = "https://svc.example/callbacks/kling?token=Im1wLTAi.sig-value-here"
    body = {"model_name": "kling-v1", "image": IMAGE_B64, "callback_url": callback_url}
    log = logging.getLogger("webhook_service.test")
    log.info("request %s", json.dumps(body))
    log.info("headers %s", {"Authorization": "Bearer client-token-123", "Content-Type": "application/json"})
    log.warning("Redis at redis://:hunter2pass@redis.internal:6379/0 unavailable")
    log.info("signing with whsec_c2VjcmV0c2VjcmV0 and %s", "configured-secret-value")
    log.info("JWT eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJhayJ9.c2lnbmF0dXJl in a message")
    log.info("download https://cdn.example/v.mp4?X-Amz-Signature=abcdef0123&X-Amz-Credential=AKIA1")
    try:
        raise RuntimeError(f"failed to post to {callback_url} with {IMAGE_B64}")
    except RuntimeError:
        log.exception("callback failed")

    text = captured.text()
    for secret in (
        IMAGE_B64[:100],
        "Im1wLTAi.sig-value-here",
        "client-token-123",
        "hunter2pass",
        "c2VjcmV0c2VjcmV0",
        "configured-secret-value",
        "eyJpc3MiOiJhayJ9",
        "abcdef0123",
        "AKIA1",
    ):
        assert secret not in text, secret
    lines = captured.lines()  # every line is one JSON object
    assert len(lines) == 7
    assert "<base64, 4000 characters>" in lines[0]["message"]
    assert "token=***" in lines[0]["message"]
    assert lines[2]["message"] == "Redis at redis://:***@redis.internal:6379/0 unavailable"
    assert "token=***" in lines[6]["exception"] and "RuntimeError" in lines[6]["exception"]
    assert {"time", "level", "logger", "message"} <= set(lines[0])


def test_extra_fields_and_bound_ids_are_fields_of_the_line(captured: Captured) -> None:
    logs.reset(request_id="req-1")
    logs.bind(external_task_id="ext-1", task_id=None)
    logging.getLogger("webhook_service.test").info("hello", extra={"attempt": 2, "note": "token=abc"})
    line = captured.lines()[0]
    assert line["request_id"] == "req-1" and line["external_task_id"] == "ext-1"
    assert "task_id" not in line
    assert line["attempt"] == 2 and line["note"] == "token=***"


def test_a_callback_is_logged_with_its_task_and_request_and_without_its_token(
    captured: Captured, service: Service, simulator
) -> None:
    """The whole path: a request with a Base64 image, Kling's callback (token in its URL), the logs."""
    body = {"image": IMAGE_B64, "prompt": "a cat", "external_task_id": "log-1"}
    assert service.submit(body).status_code == 200
    wait_for(lambda: service.task("log-1")["task_status"] == "succeed", what="the callbacks")
    token = callback_url_for(service.services.settings, "log-1").split("token=")[1]

    def news() -> list[dict[str, Any]]:
        lines = [line for line in captured.lines() if line["logger"] == "webhook_service.domain.lifecycle"]
        return [line for line in lines if line["message"].startswith("callback for log-1")]

    wait_for(news, what="the callback's log line")
    first = news()[0]
    assert first["external_task_id"] == "log-1"
    assert len(first["request_id"]) == 32
    access = [line for line in captured.lines() if "/callbacks/kling" in line["message"]]
    assert access and all("token=***" in line["message"] for line in access)
    text = captured.text()
    for secret in (token, IMAGE_B64[:64], SECRET_KEY, SIM_TOKEN):
        assert secret not in text
