"""`flask submit --timeout N` comes back within N seconds (and a little) whatever Kling does, while the
service's own KLING_TIMEOUT_S would wait a minute: here a Kling that takes the connection and never
answers, and one that answers at once but sends a header line every 0.3 s and never ends its headers.

httpx's timeouts bound each read, not the request: every line restarts the read timeout, and against
the trickling Kling `--timeout 3` took 60 s. The create times out, so its fate is unknown and the
command would look the task up before giving up: two calls to Kling, both cut at the one deadline (each
used to get the whole --timeout). The time measured is the command's, in this process (not Python's
start-up); the bound (N + 1 s) is what the command promises.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from webhook_service.integrations.kling import KlingClient, KlingTransportError, Timeouts
from webhook_service.web.app import create_app

URL_IMAGE = "https://example.com/a.jpg"
TIMEOUT_S = 3
TRICKLE_S = 0.3


@pytest.fixture
def silent_kling() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog does) and never answers a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


class _Trickle(socketserver.BaseRequestHandler):
    """An answer begun at once and never finished: a status line, then a header line every TRICKLE_S
    until the client goes away or the server stops."""

    server: _TrickleServer

    def handle(self) -> None:
        self.request.recv(65536)
        self.request.sendall(b"HTTP/1.1 200 OK\r\n")
        lines = 0
        while not self.server.stopping.wait(TRICKLE_S):
            lines += 1
            try:
                self.request.sendall(f"X-Trickle-{lines}: still coming\r\n".encode())
            except OSError:
                return  # the client gave up


class _TrickleServer(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Trickle)
        self.stopping = threading.Event()


@pytest.fixture
def trickling_kling() -> Iterator[str]:
    server = _TrickleServer()
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.stopping.set()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("wait", [False, True])
@pytest.mark.parametrize("kling", ["silent_kling", "trickling_kling"])
def test_submit_gives_up_at_its_timeout_whatever_kling_does(
    env: dict[str, str], request: pytest.FixtureRequest, kling: str, wait: bool
) -> None:
    url = request.getfixturevalue(kling)
    app = create_app({**env, "KLING_API_BASE": url, "KLING_TIMEOUT_S": "60", "SUBMIT_WAIT_S": "30"})
    task = f"slow-{kling}-{wait}"
    args = ["submit", "--image", URL_IMAGE, "--external-task-id", task, "--timeout", str(TIMEOUT_S)]
    started = time.monotonic()
    result = app.test_cli_runner().invoke(args=args + (["--wait"] if wait else []))
    elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT_S + 1, f"took {elapsed:.1f} s with --timeout {TIMEOUT_S} (KLING_TIMEOUT_S: 60)"
    assert result.exit_code == 3, result.output  # Kling unavailable: the task stays queued
    assert "the task is queued and a worker sends it later" in result.output
    shown = app.test_cli_runner().invoke(args=["tasks", "show", task])
    assert '"status": "queued"' in shown.output  # recorded, not lost: a worker sends it later


@pytest.mark.parametrize("call", ["create", "query", "list"])
def test_the_clients_deadline_ends_each_of_its_calls(trickling_kling: str, call: str) -> None:
    """The bound is the client's, so it holds wherever the service's code calls Kling under a deadline
    (the command's create, the lookup of a create whose fate is unknown, a dispatch while it waits)."""
    deadline = time.monotonic() + 1
    client = KlingClient(trickling_kling, api_token="t", timeouts=Timeouts(total=60), deadline=deadline)
    calls = {
        "create": lambda: client.create("/v1/videos/image2video", {"image": URL_IMAGE}),
        "query": lambda: client.query("/v1/videos/image2video/x"),
        "list": lambda: client.list("/v1/videos/image2video"),
    }
    with pytest.raises(KlingTransportError, match="by the deadline"):
        calls[call]()
    assert time.monotonic() - deadline < 0.5
    with pytest.raises(KlingTransportError, match="deadline passed before the request was sent"):
        calls[call]()  # and nothing more is sent
