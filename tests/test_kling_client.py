"""The Kling client against real HTTP peers: the simulator, and small loopback servers for odd answers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest

from kling_simulator import SimulatorServer
from tests.support import LiveServer, free_port
from webhook_service.integrations.kling import (
    JwtSigner,
    KlingAccountError,
    KlingAuthError,
    KlingClient,
    KlingRateLimited,
    KlingRequestError,
    KlingServerError,
    KlingTransportError,
    Timeouts,
)
from webhook_service.integrations.kling.errors import error_for

AK, SK = "kling-ak", "kling-sk-0123456789abcdef0123456789"
I2V = "/v1/videos/image2video"
BODY = {"image": "https://example.com/a.jpg", "external_task_id": "client-1"}


@pytest.fixture
def jwt_simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer(access_key=AK, secret_key=SK) as sim:
        yield sim


def test_create_query_and_list_with_a_static_token(simulator: SimulatorServer) -> None:
    client = KlingClient(simulator.url, api_token="sim-token-for-tests")
    created = client.create(I2V, BODY)
    assert created["task_status"] == "submitted"
    assert client.query(f"{I2V}/{created['task_id']}")["task_info"]["external_task_id"] == "client-1"
    assert client.query(f"{I2V}/client-1")["task_id"] == created["task_id"]
    assert [t["task_id"] for t in client.list(I2V, 1, 10)] == [created["task_id"]]


def test_gateway_prefix_in_the_base_url(simulator: SimulatorServer) -> None:
    client = KlingClient(f"{simulator.url}/kling", api_token="sim-token-for-tests")
    assert client.create(I2V, BODY)["task_id"]


def test_jwt_from_access_and_secret_key(jwt_simulator: SimulatorServer) -> None:
    client = KlingClient(jwt_simulator.url, signer=JwtSigner(AK, SK))
    assert client.create(I2V, BODY)["task_id"]
    sent = jwt_simulator.state.tasks()[0]["headers"]["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(sent, SK, algorithms=["HS256"])
    assert claims["iss"] == AK and claims["exp"] - claims["nbf"] == 1805
    assert jwt.get_unverified_header(sent) == {"alg": "HS256", "typ": "JWT"}


def test_wrong_credentials_are_an_auth_error(
    jwt_simulator: SimulatorServer, simulator: SimulatorServer
) -> None:
    with pytest.raises(KlingAuthError) as raised:
        KlingClient(jwt_simulator.url, signer=JwtSigner(AK, "not-the-secret-0123456789abcdef-x")).create(
            I2V, BODY
        )
    assert raised.value.http_status == 401 and raised.value.code == 1002 and not raised.value.retryable
    with pytest.raises(KlingAuthError):
        KlingClient(simulator.url, api_token="wrong").query(f"{I2V}/x")


def test_signer_reuses_a_token_until_near_expiry() -> None:
    signer = JwtSigner(AK, SK)
    first = signer.token()
    assert signer.token() == first
    signer._expires_at = time.time() + 100  # as if 1700 s had passed: inside the re-sign margin
    fresh = jwt.decode(signer.token(), SK, algorithms=["HS256"])
    assert fresh["exp"] >= time.time() + 1700


class Scripted:
    """A loopback peer answering a list of (status, body) in turn and recording what it was sent."""

    def __init__(self, answers: list[tuple[int, Any]]) -> None:
        self.answers = answers
        self.requests: list[dict[str, str]] = []
        self.server = LiveServer().start(self)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        self.requests.append({"Authorization": environ.get("HTTP_AUTHORIZATION", "")})
        status, body = self.answers[min(len(self.requests), len(self.answers)) - 1]
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        start_response(f"{status} X", [("Content-Type", "application/json")])
        return [payload]


def test_expired_token_answer_makes_the_client_resign_once() -> None:
    peer = Scripted(
        [(401, {"code": 1004, "message": "expired"}), (200, {"code": 0, "data": {"task_id": "1"}})]
    )
    try:
        assert KlingClient(peer.server.url, signer=JwtSigner(AK, SK)).query(f"{I2V}/1") == {"task_id": "1"}
        assert len(peer.requests) == 2
    finally:
        peer.server.stop()


@pytest.mark.parametrize(
    ("answer", "error_class", "retryable", "maybe_created"),
    [
        ((200, {"code": 1201, "message": "bad param", "request_id": "r1"}), KlingRequestError, False, False),
        ((429, {"code": 1303, "message": "concurrency"}), KlingRateLimited, True, False),
        ((429, {"code": 1102, "message": "pack used up"}), KlingAccountError, False, False),
        ((500, {"code": 5000, "message": "server error"}), KlingServerError, True, True),
        ((503, {"code": 5001, "message": "maintenance"}), KlingServerError, True, False),
        ((502, b"<html>bad gateway</html>"), KlingTransportError, True, True),
    ],
)
def test_error_answers_become_the_right_exception(
    answer: tuple[int, Any], error_class: type, retryable: bool, maybe_created: bool
) -> None:
    peer = Scripted([answer])
    try:
        with pytest.raises(error_class) as raised:
            KlingClient(peer.server.url, api_token="t").create(I2V, BODY)
    finally:
        peer.server.stop()
    error = raised.value
    assert (error.retryable, error.maybe_created, error.http_status) == (retryable, maybe_created, answer[0])
    if isinstance(answer[1], dict):
        assert error.code == answer[1]["code"] and error.message == answer[1]["message"]


def test_unreachable_upstream_is_a_retryable_transport_error() -> None:
    client = KlingClient(
        f"http://127.0.0.1:{free_port()}", api_token="t", timeouts=Timeouts(connect=1, total=2)
    )
    with pytest.raises(KlingTransportError) as raised:
        client.create(I2V, BODY)
    assert raised.value.retryable and raised.value.maybe_created and raised.value.http_status is None


@pytest.mark.parametrize(
    ("code", "retryable"),
    [(1000, False), (1001, False), (1002, False), (1003, True), (1004, True), (1100, False), (1101, False),
     (1103, False), (1200, False), (1203, False), (1300, False), (1301, False), (1302, True), (1303, True),
     (1304, False), (5000, True), (5001, True), (5002, True)],
)  # fmt: skip
def test_retry_table_of_kling_api_md(code: int, retryable: bool) -> None:
    assert error_for(400, code, "m", None).retryable is retryable
