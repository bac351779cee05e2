"""The service's machines, each a host of tests/cluster/hosts.py, started as production runs them.

Redis primary and replica, three sentinels (quorum 2), each on a host of its own; two web hosts
(gunicorn as the Procfile runs it, bound to the host's address); two worker hosts
(`python -m workers`, WORKERS_PER_HOST processes each); the Kling simulator; an S3 server (moto)
holding the shared archive. The test process, on the switch at .1, is the client, the balancer in
front of the web hosts (Kling's callback URL) and the webhook receiver. Every service process finds
Redis through the sentinels only.
"""

from __future__ import annotations

import base64
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import boto3
import httpx
import redis
from redis.sentinel import Sentinel

from tests.cluster.hosts import Host, Network
from tests.cluster.traffic import Balancer, Receiver
from tests.support import wait_for
from webhook_service.event_types import EventType

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
MASTER = "kws-primary"
REDIS_PORT, SENTINEL_PORT, WEB_PORT, KLING_PORT, S3_PORT = 6379, 26379, 8000, 9100, 5000
SIM_TOKEN = "cluster-simulator-token"
CLIENT_KEY = "cluster-client-key-0123456789abcdef"
SECRET_KEY = "cluster-secret-key-0123456789abcdef"
WHSEC = "whsec_" + base64.b64encode(b"cluster-webhook-secret-0123456").decode()
BUCKET, PREFIX = "cluster-archive", "videos"
S3_SECRET = "cluster-fake-secret"
OCTETS = {
    "redis-a": 10,
    "redis-b": 11,
    "sentinel-1": 21,
    "sentinel-2": 22,
    "sentinel-3": 23,
    "web-1": 31,
    "web-2": 32,
    "worker-1": 41,
    "worker-2": 42,
    "kling": 51,
    "s3": 52,
}
WORKERS_PER_HOST = 3  # on 2 cores, jobs mostly wait for S3, Kling and Redis
WEB_PROCESSES_PER_HOST = 2
SENTINEL_DOWN_AFTER_MS = 1000


class Cluster:
    """Every host, started in dependency order; `stop()` tears everything down, also half-started."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.network = Network(workdir / "logs")
        self.hosts: dict[str, Host] = {}
        self.balancer: Balancer | None = None
        self.receiver: Receiver | None = None

    def host(self, role: str) -> Host:
        return self.hosts[role]

    @property
    def redis_hosts(self) -> list[Host]:
        return [self.hosts["redis-a"], self.hosts["redis-b"]]

    @property
    def sentinel_hosts(self) -> list[Host]:
        return [self.hosts[f"sentinel-{n}"] for n in (1, 2, 3)]

    @property
    def web_urls(self) -> list[str]:
        return [f"http://{self.hosts[role].address}:{WEB_PORT}" for role in ("web-1", "web-2")]

    @property
    def kling_url(self) -> str:
        return f"http://{self.hosts['kling'].address}:{KLING_PORT}"

    @property
    def s3_url(self) -> str:
        return f"http://{self.hosts['s3'].address}:{S3_PORT}"

    def start(self) -> Cluster:
        for role, octet in OCTETS.items():
            self.hosts[role] = self.network.add_host(role, octet)
        self._start_redis()
        self._start_s3()
        self._start_kling()
        root = self.network.root_address
        self.receiver = Receiver(root, WHSEC)
        backends = [(self.hosts[role].address, WEB_PORT) for role in ("web-1", "web-2")]
        self.balancer = Balancer(root, backends).start()
        for role in ("web-1", "web-2"):
            self._start_web(self.hosts[role])
        for role in ("worker-1", "worker-2"):
            for n in range(WORKERS_PER_HOST):
                self.hosts[role].run(
                    [PYTHON, "-m", "workers"], self.service_env(self.hosts[role]), f"w{n}", ROOT
                )
        for url in self.web_urls:
            wait_for(lambda url=url: _answers(f"{url}/healthz"), timeout=60, what=f"{url} to serve")
        expected = 2 * WORKERS_PER_HOST
        wait_for(lambda: self.workers_registered() >= expected, timeout=60, what="every worker registered")
        return self

    # --- Redis and Sentinel ---

    def _start_redis(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is not installed"
        primary = self.hosts["redis-a"]
        for host in self.redis_hosts:
            data = self.workdir / host.role
            data.mkdir()
            config = ["--port", str(REDIS_PORT), "--bind", host.address, "--protected-mode", "no"]
            config += ["--dir", str(data), "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
            if host is not primary:
                config += ["--replicaof", primary.address, str(REDIS_PORT)]
            host.run([binary, *config], {"PATH": os.environ["PATH"]}, "redis")
        for host in self.sentinel_hosts:
            data = self.workdir / host.role
            data.mkdir()
            config = data / "sentinel.conf"  # Sentinel rewrites its own file
            config.write_text(
                f"port {SENTINEL_PORT}\nbind {host.address}\nprotected-mode no\ndir {data}\n"
                f"sentinel monitor {MASTER} {primary.address} {REDIS_PORT} 2\n"
                f"sentinel down-after-milliseconds {MASTER} {SENTINEL_DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER} 10000\n"
            )
            host.run([binary, str(config), "--sentinel"], {"PATH": os.environ["PATH"]}, "sentinel")
        wait_for(self._sentinels_watching, timeout=30, what="sentinels to see the replica and each other")

    def sentinel(self, host: Host) -> redis.Redis:
        return redis.Redis(host=host.address, port=SENTINEL_PORT, socket_timeout=1, decode_responses=True)

    def _sentinels_watching(self) -> bool:
        try:
            for host in self.sentinel_hosts:
                client = self.sentinel(host)
                replicas = client.execute_command("SENTINEL", "REPLICAS", MASTER)
                peers = client.execute_command("SENTINEL", "SENTINELS", MASTER)
                up = [r for r in replicas if "down" not in _fields(r).get("flags", "down")]
                if not up or len(peers) < len(self.sentinel_hosts) - 1:
                    return False
            return True
        except redis.RedisError:
            return False

    def primary_address(self) -> str | None:
        """The address the sentinels (every one asked) name as an up primary; None while they do not."""
        named = set()
        for host in self.sentinel_hosts:
            try:
                state = self.sentinel(host).sentinel_master(MASTER)
            except redis.RedisError:
                return None
            if state["is_sdown"] or state["is_odown"] or not state["is_master"]:
                return None
            named.add(state["ip"])
        return named.pop() if len(named) == 1 else None

    def redis(self) -> redis.Redis:
        """The primary, through the sentinels, as the service finds it."""
        addresses = [(host.address, SENTINEL_PORT) for host in self.sentinel_hosts]
        sentinels = Sentinel(
            addresses, sentinel_kwargs={"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
        )
        return sentinels.master_for(MASTER, socket_timeout=5, socket_connect_timeout=2)

    def workers_registered(self) -> int:
        try:
            return int(self.redis().scard("rq:workers"))
        except redis.RedisError:
            return 0

    # --- the archive, Kling, the web and workers ---

    @property
    def aws_env(self) -> dict[str, str]:
        """Fake credentials only, and no AWS configuration of this machine's."""
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(self.workdir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.workdir / "no-aws-credentials"),
        }

    def s3(self) -> Any:
        return boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key=S3_SECRET, region_name="us-east-1"
        ).client("s3", endpoint_url=self.s3_url)

    def _start_s3(self) -> None:
        host = self.hosts["s3"]
        moto = Path(PYTHON).parent / "moto_server"
        host.run([str(moto), "-H", host.address, "-p", str(S3_PORT)], self._base_env(), "moto")
        wait_for(lambda: _answers(f"{self.s3_url}/moto-api/"), timeout=60, what="the S3 server")
        self.s3().create_bucket(Bucket=BUCKET)

    def _start_kling(self) -> None:
        host = self.hosts["kling"]
        env = {**self._base_env(), "KLING_SIMULATOR_TOKEN": SIM_TOKEN}
        argv = [PYTHON, "-m", "kling_simulator", "--host", host.address, "--port", str(KLING_PORT), "--quiet"]
        host.run(argv, env, "simulator", ROOT)
        wait_for(lambda: _answers(f"{self.kling_url}/_sim/tasks"), timeout=60, what="the Kling simulator")

    def _start_web(self, host: Host) -> None:
        env = {**self.service_env(host), "HOST": host.address, "PORT": str(WEB_PORT)}
        env["WEB_CONCURRENCY"] = str(WEB_PROCESSES_PER_HOST)
        host.run([PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], env, "gunicorn", ROOT)

    def _base_env(self) -> dict[str, str]:
        # No settings file of the checkout's (.env, a running scripts/up's data/dev.env) is read.
        base = {"PATH": os.environ["PATH"], "HOME": str(self.workdir), "LANG": "C.UTF-8"}
        return {**base, "READ_SETTINGS_FILES": "false", **self.aws_env}

    def service_env(self, host: Host) -> dict[str, str]:
        """The service's settings on `host`: Redis through the sentinels only, the archive in S3."""
        assert self.balancer is not None and self.receiver is not None
        own = self.workdir / host.role
        (own / "metrics").mkdir(parents=True, exist_ok=True)
        sentinels = ",".join(f"{h.address}:{SENTINEL_PORT}" for h in self.sentinel_hosts)
        return {
            **self._base_env(),
            "REDIS_URL": "redis://localhost:6379/0",  # the database number only, with Sentinel
            "REDIS_SENTINELS": sentinels,
            "REDIS_SENTINEL_MASTER": MASTER,
            "SECRET_KEY": SECRET_KEY,
            "SERVICE_API_KEYS": CLIENT_KEY,  # the default tenant: ids, folders and Kling's ids alike
            "KLING_API_BASE": self.kling_url,
            "KLING_API_TOKEN": SIM_TOKEN,
            "KLING_MAX_CONCURRENCY": "1000",  # every task upstream at once: the account is no bottleneck
            "KLING_TIMEOUT_S": "5",
            "PUBLIC_BASE_URL": self.balancer.url,
            "ARCHIVE_URL": f"s3://{BUCKET}/{PREFIX}",
            "S3_ENDPOINT_URL": self.s3_url,
            "ARCHIVE_SPOOL_DIR": str(own / "spool"),
            "ARCHIVE_RETRY_BASE_S": "1",
            "DOWNLOAD_ALLOWED_HOSTS": self.hosts["kling"].address,  # a private address, refused otherwise
            "NOTIFY_WEBHOOK_URLS": self.receiver.url,
            "NOTIFY_WEBHOOK_SECRET": WHSEC,
            "NOTIFY_WEBHOOK_EVENTS": ",".join(EventType),  # every task event, each task's in order
            "NOTIFY_RETRY_SCHEDULE_S": "1,2,4,8,16,30",
            "RECONCILE_INTERVAL_S": "3",
            "RECONCILE_AFTER_S": "6",
            "RECONCILE_POLLS_PER_S": "50",
            "PROMETHEUS_MULTIPROC_DIR": str(own / "metrics"),
        }

    def simulator(self, method: str, path: str, body: Any = None) -> Any:
        answer = httpx.request(method, f"{self.kling_url}{path}", json=body, timeout=30, trust_env=False)
        answer.raise_for_status()
        return answer.json()

    def tails(self) -> str:
        return "\n".join(host.tail() for host in self.hosts.values())

    def stop(self) -> None:
        if self.balancer is not None:
            self.balancer.stop()
        if self.receiver is not None:
            self.receiver.stop()
        self.network.teardown()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code < 500
    except httpx.HTTPError:
        return False


def _fields(reply: Any) -> dict[str, str]:
    """A Sentinel reply as a dict: RESP2 gives a flat list of names and values."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    return dict(zip(reply[::2], reply[1::2], strict=True))
