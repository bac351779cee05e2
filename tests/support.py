"""Test helpers: real servers on loopback and polling with a deadline (tests never sleep blindly)."""

from __future__ import annotations

import ctypes
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
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
    URL to hand out callback URLs. With `ssl_context` it speaks HTTPS (for clients that refuse plain HTTP).
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.app: Callable[..., Any] | None = None
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, self._dispatch, threaded=True, ssl_context=ssl_context
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

    def __init__(self, *config: str, dies_with_run: bool = False, password: str = "") -> None:
        self.config = config
        self.dies_with_run = dies_with_run
        self.password = password  # the clients' (requirepass) and, for a replica, its primary's
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://{f':{password}@' if password else ''}127.0.0.1:{self.port}/0"
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
                *(("--requirepass", self.password, "--masterauth", self.password) if self.password else ()),
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


class SentinelGroup:
    """A primary, its replica and three sentinels watching them (quorum 2), all redis-servers of the test's
    own on loopback, for failovers. Sentinels judge a primary down after `down_after_ms` without an
    answer. With passwords, configured as docs/deployment.md sets them: `password` is the Redis servers'
    (each also authenticates to its primary with it), `sentinel_password` the sentinels' own. `stop()`
    kills every process, also after a failed start."""

    MASTER = "kws-primary"

    def __init__(self, down_after_ms: int = 1000, password: str = "", sentinel_password: str = "") -> None:
        self.down_after_ms = down_after_ms
        self.password = password
        self.sentinel_password = sentinel_password
        self.primary = PrivateRedis(dies_with_run=True, password=password)
        self.replica = PrivateRedis(dies_with_run=True, password=password)
        self.sentinel_ports = [free_port() for _ in range(3)]
        self._sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def env(self) -> dict[str, str]:
        """The service's settings that point it at this group."""
        sentinels = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        passwords = {"REDIS_PASSWORD": self.password, "REDIS_SENTINEL_PASSWORD": self.sentinel_password}
        given = {name: value for name, value in passwords.items() if value}
        return {"REDIS_SENTINELS": sentinels, "REDIS_SENTINEL_MASTER": self.MASTER, **given}

    def start(self) -> SentinelGroup:
        try:
            self.primary.start()
            self.replica.config = ("--replicaof", "127.0.0.1", str(self.primary.port))
            self.replica.start()
            for port in self.sentinel_ports:
                self._sentinels.append(self._start_sentinel(port))
            wait_for(self._replicating, timeout=20, what="the replica in sync with the primary")
            wait_for(self._watching, timeout=20, what="sentinels to see the replica and each other")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_sentinel(self, port: int) -> subprocess.Popen[bytes]:
        config = Path(self.primary._dir) / f"sentinel-{port}.conf"  # Sentinel rewrites its file
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.primary._dir}\n"
            f"sentinel monitor {self.MASTER} 127.0.0.1 {self.primary.port} 2\n"
            f"sentinel down-after-milliseconds {self.MASTER} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.MASTER} 10000\n"
        )
        with config.open("a") as more:
            if self.password:
                more.write(f"sentinel auth-pass {self.MASTER} {self.password}\n")
            if self.sentinel_password:  # asked of clients, and of each other
                more.write(f"requirepass {self.sentinel_password}\n")
                more.write(f"sentinel sentinel-pass {self.sentinel_password}\n")
        return subprocess.Popen(
            [self.primary.binary, str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )

    def sentinel(self, index: int = 0) -> redis.Redis:
        return redis.Redis(
            port=self.sentinel_ports[index],
            password=self.sentinel_password or None,
            socket_timeout=2,
            decode_responses=True,
        )

    def server(self, port: int) -> redis.Redis:
        """A client of one of the group's Redis servers (the primary or the replica), by its port."""
        return redis.Redis(port=port, password=self.password or None, socket_timeout=2)

    def _watching(self) -> bool:
        try:
            for index in range(len(self.sentinel_ports)):
                client = self.sentinel(index)
                replicas = client.execute_command("SENTINEL", "REPLICAS", self.MASTER)
                peers = client.execute_command("SENTINEL", "SENTINELS", self.MASTER)
                up = [r for r in replicas if "down" not in _fields(r).get("flags", "x,down")]
                if not up or len(peers) < len(self.sentinel_ports) - 1:
                    return False
            return True
        except redis.RedisError:
            return False

    def _replicating(self) -> bool:
        """The replica's first full sync is done: before it, a killed primary takes every write with it."""
        try:
            link = self.server(self.replica.port).info("replication")
        except redis.RedisError:
            return False
        return bool(link.get("master_link_status") == "up" and not link.get("master_sync_in_progress"))

    def primary_port(self) -> int | None:
        """The port of the primary the sentinels name now; None while they name none that is up."""
        try:
            state = self.sentinel().sentinel_master(self.MASTER)
        except redis.RedisError:
            return None
        down = state["is_sdown"] or state["is_odown"] or not state["is_master"]
        return None if down else int(state["port"])

    def stop(self) -> None:
        for process in self._sentinels:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
        self._sentinels.clear()
        self.replica.stop()
        self.primary.stop()


def _fields(reply: Any) -> dict[str, str]:
    """A Sentinel reply as a dict: RESP2 gives a flat list of names and values."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    return dict(zip(reply[::2], reply[1::2], strict=True))
