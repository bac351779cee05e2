"""Test helpers: real servers on loopback and polling with a deadline (tests never sleep blindly)."""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from standardwebhooks import Webhook
from werkzeug.serving import BaseWSGIServer, make_server

from bench.redis_servers import PrivateRedis as PrivateRedis
from bench.redis_servers import SentinelGroup as SentinelGroup
from bench.redis_servers import die_with_parent as die_with_parent
from bench.redis_servers import free_port as free_port
from webhook_service.integrations.outbound import refusal_of_url

# The Redis servers (one, or a Sentinel group) are shared with the benchmarks: bench/redis_servers.py.

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> T:
    """Poll until `predicate()` is truthy and return its value; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


class LiveServer:
    """A WSGI app served by werkzeug in a thread on 127.0.0.1, port chosen by the OS.

    The port is known before the app is built (`url`), because the service needs its own public
    URL to hand out callback URLs. With `ssl_context` it speaks HTTPS (for clients that refuse plain HTTP).
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None, port: int = 0) -> None:
        """`port` 0: one the OS chooses; a given one serves again where a stopped server was."""
        self.app: Callable[..., Any] | None = None
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", port, self._dispatch, threaded=True, ssl_context=ssl_context
        )
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _dispatch(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        assert self.app is not None, "LiveServer.app was not set"
        return self.app(environ, start_response)

    def start(self, app: Callable[..., Any]) -> LiveServer:
        self.app = app
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def alive(pid: int) -> bool:
    """Whether a process exists (one of another user's counts: signalling it is refused, not failed)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Receiver:
    """A downstream webhook endpoint on loopback: verifies each signature, counts each webhook-id."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.lock = threading.Lock()
        self.ids: Counter[str] = Counter()
        self.by_event: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.server = LiveServer().start(self._app)
        self.url = f"{self.server.url}/hook"

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        event = Webhook(self.secret).verify(raw, headers)
        with self.lock:
            self.ids[headers["webhook-id"]] += 1
            self.by_event[(event["data"]["external_task_id"], event["type"])].add(headers["webhook-id"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


def loopback_name() -> str:
    """A name, not an address, that resolves to this machine: what a rebinding DNS answer looks like.

    Only a name gets past the check at submission; the hosts file of most machines has one.
    """
    for name in (socket.gethostname(), "localhost.localdomain", "ip6-localhost"):
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(name, None, socket.AF_INET)}
        except OSError:
            continue
        inside = addresses and all(ipaddress.ip_address(a).is_loopback for a in addresses)
        if inside and refusal_of_url(f"http://{name}/", frozenset()) is None:
            return name
    pytest.skip("no name here resolves to 127.0.0.1 but localhost, which is refused at submission")
