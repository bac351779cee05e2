"""Test helpers: real servers on loopback and polling with a deadline (tests never sleep blindly)."""

from __future__ import annotations

import ctypes
import ipaddress
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import redis
from standardwebhooks import Webhook
from werkzeug.serving import BaseWSGIServer, make_server

from webhook_service.integrations.outbound import refusal_of_url

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
    URL to hand out callback URLs.
    """

    def __init__(self) -> None:
        self.app: Callable[..., Any] | None = None
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, self._dispatch, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
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


def die_with_parent() -> None:
    """For preexec_fn: the child gets SIGKILL when the test process dies, so none outlives a run."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of the test's own, on its own port, that the test may stop and start again.

    `config` is more of redis-server's options ("--maxmemory-policy", "allkeys-lru"), given after the
    defaults, so they win."""

    def __init__(self, *config: str, dies_with_run: bool = False) -> None:
        self.config = config
        self.dies_with_run = dies_with_run
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="kws-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        self._process = subprocess.Popen(
            # appendfsync always: a stop and start keeps every write, like a production Redis would.
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                self._dir,
                *self.config,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # The parent-death signal comes when the starting *thread* ends: only for a server started
            # from the main thread (the run's own); tests restart theirs from threads (an outage under
            # load), which would kill it again for good.
            preexec_fn=die_with_parent if self.dies_with_run else None,
        )
        client = redis.Redis.from_url(self.url)
        wait_for(lambda: _pings(client), timeout=10, what="private redis-server to answer")
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


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
