"""Redis servers of a run's own on loopback: one redis-server, or a Sentinel group (a primary, its replica
and three sentinels). The test suite and the benchmarks both start theirs here, so that neither ever
touches a Redis it did not start (tests empty their database; benchmarks fill theirs).

Only the standard library and redis-py: tests/support.py and bench/harness.py import it, and it
imports neither.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """For preexec_fn: the child gets SIGKILL when its parent dies, so none outlives a run."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _redis_server() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    return binary


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class PrivateRedis:
    """A redis-server of the run's own, on its own port, that may be stopped and started again.

    `config` is more of redis-server's options ("--maxmemory-policy", "allkeys-lru"), given after the
    defaults, so they win. Its files go to a directory of its own: under `directory` when given (with
    its output in a log file beside them, for a run's logs to be read after it), else a new
    temporary one."""

    def __init__(
        self, *config: str, dies_with_run: bool = False, password: str = "", directory: Path | None = None
    ) -> None:
        self.config = config
        self.dies_with_run = dies_with_run
        self.password = password  # the clients' (requirepass) and, for a replica, its primary's
        self.binary = _redis_server()
        self.port = free_port()
        self.url = f"redis://{f':{password}@' if password else ''}127.0.0.1:{self.port}/0"
        self.log: Path | None = None
        if directory is None:
            self.dir = Path(tempfile.mkdtemp(prefix="kws-redis-"))
        else:
            self.dir = directory / f"redis-{self.port}"
            self.dir.mkdir(parents=True)
            self.log = directory / f"redis-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "the redis-server is not running"
        return self._process.pid

    def start(self) -> PrivateRedis:
        self._process = _start(
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
                str(self.dir),
                *(("--requirepass", self.password, "--masterauth", self.password) if self.password else ()),
                *self.config,
            ],
            self.log,
            # The parent-death signal comes when the starting *thread* ends: only for a server started
            # from the main thread (the run's own); tests restart theirs from threads (an outage under
            # load), which would kill it again for good.
            dies_with_run=self.dies_with_run,
        )
        client = redis.Redis.from_url(self.url)
        _wait(lambda: _pings(client), timeout=10, what=f"the private redis-server on port {self.port}")
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None


def _start(command: list[str], log: Path | None, *, dies_with_run: bool) -> subprocess.Popen[bytes]:
    output: IO[bytes] | int = log.open("ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            command,
            stdout=output,
            stderr=output,
            preexec_fn=die_with_parent if dies_with_run else None,
        )
    finally:
        if not isinstance(output, int):
            output.close()  # the child has its own copy


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class SentinelGroup:
    """A primary, its replica and three sentinels watching them (quorum 2), all redis-servers of the run's
    own on loopback. Sentinels judge a primary down after `down_after_ms` without an answer. With
    passwords, configured as docs/deployment.md sets them: `password` is the Redis servers' (each also
    authenticates to its primary with it), `sentinel_password` the sentinels' own. `config` is more
    options for both Redis servers; `directory` holds every file of the group (see PrivateRedis).
    `stop()` kills every process, also after a failed start."""

    MASTER = "kws-primary"

    def __init__(
        self,
        down_after_ms: int = 1000,
        password: str = "",
        sentinel_password: str = "",
        *,
        config: tuple[str, ...] = (),
        directory: Path | None = None,
    ) -> None:
        self.down_after_ms = down_after_ms
        self.password = password
        self.sentinel_password = sentinel_password
        self.directory = directory
        self.primary = PrivateRedis(*config, dies_with_run=True, password=password, directory=directory)
        self.replica = PrivateRedis(*config, dies_with_run=True, password=password, directory=directory)
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
            self.replica.config += ("--replicaof", "127.0.0.1", str(self.primary.port))
            self.replica.start()
            for port in self.sentinel_ports:
                self._sentinels.append(self._start_sentinel(port))
            _wait(self._replicating, timeout=20, what="the replica in sync with the primary")
            _wait(self._watching, timeout=20, what="sentinels to see the replica and each other")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_sentinel(self, port: int) -> subprocess.Popen[bytes]:
        config = self.primary.dir / f"sentinel-{port}.conf"  # Sentinel rewrites its file
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.primary.dir}\n"
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
        log = self.directory / f"sentinel-{port}.log" if self.directory else None
        return _start([self.primary.binary, str(config), "--sentinel"], log, dies_with_run=True)

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
        assert isinstance(state, dict), state  # redis-py's reply to SENTINEL MASTER
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
