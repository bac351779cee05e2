"""Hostile input: forgeries, replays, oversized and deeply nested bodies are refused, cheaply."""

from __future__ import annotations

import json
import secrets
import socket
import string
import time
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser

import pytest
from standardwebhooks import Webhook

from tests.conftest import Service, make_service
from tests.reliability.scale import scaled
from webhook_service.domain.callback_tokens import callback_url_for
from webhook_service.domain.events import Event
from webhook_service.notify.render import email_message

WHSEC = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ="
IMAGE = {"image": "https://example.com/a.jpg"}
URLSAFE_ALPHABET = string.ascii_letters + string.digits + "-_"


@pytest.fixture
def signed(env: dict[str, str]):
    service, server, _ = make_service(env, KLING_WEBHOOK_SECRET=WHSEC)
    yield service
    server.stop()


def queued(service: Service, simulator, external_id: str) -> str:
    simulator.state.set_scenario(external_id, {"steps": [{"status": "succeed", "delay": 0, "send": False}]})
    assert service.submit({**IMAGE, "external_task_id": external_id}).status_code == 200
    return callback_url_for(service.services.settings, external_id).removeprefix(service.url)


def tampered_signature(url: str) -> str:
    """The token with one character of its signature changed, never the last one: base64 decoding drops
    the last character's low (padding) bits, so a different last character can spell the very same
    signature, which is then rightly accepted (four spellings of each token; a changed last two
    characters hit one in about a thousand tries)."""
    payload, _, signature = url.rpartition(".")
    position = secrets.randbelow(len(signature) - 1)
    replacement = secrets.choice([c for c in URLSAFE_ALPHABET if c != signature[position]])
    return f"{payload}.{signature[:position]}{replacement}{signature[position + 1 :]}"


def test_forged_tokens_are_all_refused(service: Service, simulator) -> None:
    real = queued(service, simulator, "target")
    count = scaled(200, 1000)
    forged = [f"/callbacks/kling?token={secrets.token_urlsafe(24)}" for _ in range(count // 2)]
    tampered = [tampered_signature(real) for _ in range(count // 2)]
    answers = [
        service.http.post(url, json={"task_status": "succeed"}).status_code for url in forged + tampered
    ]
    assert set(answers) <= {403}, set(answers)
    assert service.task("target")["task_status"] == "submitted"


def test_forged_and_replayed_signatures_are_all_refused(signed: Service, simulator) -> None:
    path = queued(signed, simulator, "signed")
    body = json.dumps({"task_status": "succeed"})
    count = scaled(200, 1000)
    now = int(time.time())
    statuses = set()
    for n in range(count):
        headers = {
            "webhook-id": f"msg_{n}",
            "webhook-timestamp": str(now),
            "webhook-signature": "v1," + secrets.token_urlsafe(32),
        }
        statuses.add(signed.http.post(path, content=body, headers=headers).status_code)
    assert statuses == {401}

    # A genuine signature, replayed after the 5-minute window (or sent from the future): refused.
    for offset in (-330, -3600, 330, 3600):  # margins: the request leaves a few seconds after `now`
        stamp = datetime.fromtimestamp(now + offset, UTC)
        headers = {
            "webhook-id": "msg_replay",
            "webhook-timestamp": str(now + offset),
            "webhook-signature": Webhook(WHSEC).sign("msg_replay", stamp, body),
        }
        assert signed.http.post(path, content=body, headers=headers).status_code == 401
    assert signed.task("signed")["task_status"] == "submitted"


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_is_refused_not_crashed(service: Service, simulator, depth: int) -> None:
    path = queued(service, simulator, "nested")
    nested = ("[" * depth + "]" * depth).encode()
    nested_object = ('{"a":' * depth + "1" + "}" * depth).encode()
    for body in (nested, nested_object):
        callback = service.http.post(path, content=body, headers={"Content-Type": "application/json"})
        assert callback.status_code == 400, callback.text
        create = service.http.post(
            "/v1/videos/image2video", content=body, headers={"Content-Type": "application/json"}
        )
        assert create.status_code == 400 and create.json()["code"] == 1201, create.text
    assert service.task("nested")["task_status"] == "submitted"


def test_oversized_bodies_are_refused_before_they_are_read(service: Service, simulator) -> None:
    path = queued(service, simulator, "big")
    callback = service.http.post(
        path, content=b"x" * (2 * 1024 * 1024), headers={"Content-Type": "application/json"}
    )
    assert callback.status_code == 413

    # A body announced as 200 MiB is refused on its headers alone: the server does not wait for it.
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/videos/image2video HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 209715200\r\n\r\n{"
        )
        assert sock.recv(64).startswith(b"HTTP/1.1 413")
    assert service.task("big")["task_status"] == "submitted"


@pytest.mark.parametrize("breaker", ["\r\n", "\n", "\r", "\u2028", "\x85", "\r\n\t"])
def test_prompt_cannot_inject_email_headers(breaker: str) -> None:
    prompt = f"a cat{breaker}Bcc: victim@example.com{breaker}Subject: pwned{breaker}{breaker}body"
    payload = json.dumps({"type": "task.failed", "data": {"status": "failed", "external_task_id": "x"}})
    event = Event(id="evt_1", type="task.failed", external_task_id="x", payload=payload, prompt=prompt)

    message = email_message(event, "http://127.0.0.1:8000", "service@example.com", ("ops@example.com",))
    parsed = BytesParser(policy=policy.default).parsebytes(message.as_bytes())

    assert parsed["Bcc"] is None and parsed.get_all("Subject") == [parsed["Subject"]]
    assert parsed.get_all("To") == ["ops@example.com"]
    assert "Bcc: victim@example.com" in parsed["Subject"]  # kept as words, on the subject's one line
