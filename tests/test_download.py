"""The downloader against the simulator's file server on loopback: integrity, resume after every kind of
fault, permanent failures, the size cap and the address guard.

No test sends traffic off this machine: `loopback_only` fails any connection to another address, which
also proves the guard refuses internal addresses before connecting rather than after.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

import webhook_service.integrations.download
from kling_simulator import SimulatorServer
from webhook_service.integrations.download import Downloaded, DownloadError, DownloadPolicy, download

MIB = 1 << 20
# A worker process downloading argv[1] into argv[2], as an RQ job would.
WORKER = """
import sys
from pathlib import Path
from webhook_service.integrations.download import DownloadPolicy, download
download(sys.argv[1], Path(sys.argv[2]), DownloadPolicy(allowed_hosts=frozenset({"127.0.0.1"})))
"""
POLICY = DownloadPolicy(allowed_hosts=frozenset({"127.0.0.1"}), connect_timeout=2, read_timeout=5, backoff=0)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    """One server for the module; each test uses its own file names, so their faults stay apart."""
    with SimulatorServer() as server:
        yield server


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real_connect = socket.socket.connect
    off_host: list[Any] = []

    def connect(self: socket.socket, address: Any) -> None:
        if not ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback:
            off_host.append(address)
            raise RuntimeError(f"test tried to connect to {address}")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield
    assert off_host == []


@pytest.fixture
def part(tmp_path: Path) -> Path:
    return tmp_path / "video.mp4.part"


def url(sim: SimulatorServer, name: str) -> str:
    return f"{sim.url}/files/extra/{name}"


def requests_for(sim: SimulatorServer, name: str) -> list[dict[str, Any]]:
    return [entry for entry in sim.state.file_requests() if entry["name"] == name]


def sha256_of(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def assert_complete(sim: SimulatorServer, name: str, result: Downloaded, size: int) -> None:
    expected = sim.state.expected_sha256(name)
    assert (result.size, result.sha256) == (size, expected)
    assert result.path.stat().st_size == size and sha256_of(result.path) == expected


def failure(target: str, part: Path, policy: DownloadPolicy = POLICY) -> DownloadError:
    with pytest.raises(DownloadError) as caught:
        download(target, part, policy)
    return caught.value


def test_multi_megabyte_file(sim: SimulatorServer, part: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        webhook_service.integrations.download, "_WRITEBACK_EVERY", MIB
    )  # exercised at test sizes too
    sim.state.add_file("big", size=8 * MIB + 12345)
    result = download(url(sim, "big"), part, POLICY)
    assert_complete(sim, "big", result, 8 * MIB + 12345)
    assert (result.path, result.final_url, result.content_type) == (part, url(sim, "big"), "video/mp4")
    assert [e["range"] for e in requests_for(sim, "big")] == [None]


def test_truncated_body_is_resumed_with_range(sim: SimulatorServer, part: Path) -> None:
    sim.state.add_file("cut", size=4 * MIB, faults=["truncate"])
    assert_complete(sim, "cut", download(url(sim, "cut"), part, POLICY), 4 * MIB)
    first, second = requests_for(sim, "cut")
    assert (first["fault"], first["range"], first["status"]) == ("truncate", None, 200)
    assert (second["range"], second["status"]) == (f"bytes={2 * MIB}-", 206)
    assert second["if_range"] is not None  # the ETag seen in the first response


def test_dropped_connection_is_resumed(sim: SimulatorServer, part: Path) -> None:
    sim.state.add_file("drop", size=4 * MIB, faults=["drop"])
    assert_complete(sim, "drop", download(url(sim, "drop"), part, POLICY), 4 * MIB)
    assert [(e["range"], e["status"]) for e in requests_for(sim, "drop")] == [
        (None, 200),
        (f"bytes={MIB // 2}-", 206),
    ]


def test_stalled_body_times_out_and_resumes(sim: SimulatorServer, part: Path) -> None:
    sim.state.add_file("slow", size=MIB, faults=["slow"])
    result = download(url(sim, "slow"), part, replace(POLICY, read_timeout=0.5))  # the stall is 1 s
    assert_complete(sim, "slow", result, MIB)
    assert [e["range"] for e in requests_for(sim, "slow")] == [None, f"bytes={MIB // 4}-"]


def test_server_errors_are_retried(sim: SimulatorServer, part: Path) -> None:
    sim.state.add_file("flaky", size=MIB, faults=["500", "503"])
    assert_complete(sim, "flaky", download(url(sim, "flaky"), part, POLICY), MIB)
    assert [e["status"] for e in requests_for(sim, "flaky")] == [500, 503, 200]


def test_exhausted_attempts_keep_the_part_for_the_next_call(sim: SimulatorServer, part: Path) -> None:
    sim.state.add_file("worse", size=2 * MIB, faults=["truncate", "503"])
    error = failure(url(sim, "worse"), part, replace(POLICY, attempts=2))
    assert (error.reason, error.permanent, error.http_status) == ("server_error", False, 503)
    assert part.stat().st_size == MIB
    assert_complete(sim, "worse", download(url(sim, "worse"), part, POLICY), 2 * MIB)
    assert requests_for(sim, "worse")[-1]["range"] == f"bytes={MIB}-"


def test_incomplete_after_all_attempts(sim: SimulatorServer, part: Path) -> None:
    sim.state.add_file("cuts", size=MIB, faults=["truncate", "truncate"])
    error = failure(url(sim, "cuts"), part, replace(POLICY, attempts=2))
    assert (error.reason, error.permanent, error.http_status) == ("incomplete", False, None)
    assert "127.0.0.1" in str(error) and part.stat().st_size == MIB // 2 + MIB // 4


def test_existing_part_file_is_resumed(sim: SimulatorServer, part: Path) -> None:
    data = os.urandom(3 * MIB)
    sim.state.add_file("data", data=data)
    part.write_bytes(data[:1_000_001])
    result = download(url(sim, "data"), part, POLICY)
    assert (result.size, result.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert part.read_bytes() == data
    [request] = requests_for(sim, "data")
    assert (request["range"], request["if_range"], request["status"]) == ("bytes=1000001-", None, 206)


def test_resume_after_the_worker_is_killed(sim: SimulatorServer, part: Path) -> None:
    """A worker SIGKILLed mid-body leaves a prefix on disk, which the next job resumes."""
    sim.state.add_file("killed", size=16 * MIB, faults=["slow"])  # stalls after 4 MiB
    command = [sys.executable, "-c", WORKER, url(sim, "killed"), str(part)]
    with subprocess.Popen(command, cwd=Path(__file__).parent.parent) as worker:
        deadline = time.monotonic() + 10
        while not (part.exists() and part.stat().st_size >= 2 * MIB):
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=5)
    left = part.stat().st_size
    assert_complete(sim, "killed", download(url(sim, "killed"), part, POLICY), 16 * MIB)
    assert [e["range"] for e in requests_for(sim, "killed")] == [None, f"bytes={left}-"]


def test_server_ignoring_range_restarts_from_zero(sim: SimulatorServer, part: Path) -> None:
    sim.state.add_file("norange", size=2 * MIB, ranges=False)
    part.write_bytes(b"not what the server has" * 1000)
    assert_complete(sim, "norange", download(url(sim, "norange"), part, POLICY), 2 * MIB)
    [request] = requests_for(sim, "norange")
    assert (request["range"], request["status"]) == ("bytes=23000-", 200)


def test_part_file_already_complete(sim: SimulatorServer, part: Path) -> None:
    data = os.urandom(MIB)
    sim.state.add_file("done", data=data)
    part.write_bytes(data)
    result = download(url(sim, "done"), part, POLICY)
    assert (result.size, result.sha256) == (MIB, hashlib.sha256(data).hexdigest())
    assert [e["status"] for e in requests_for(sim, "done")] == [416]


@pytest.mark.parametrize("status", [403, 404, 410])
def test_gone_is_permanent_and_drops_the_part(sim: SimulatorServer, part: Path, status: int) -> None:
    name = f"gone{status}"
    sim.state.add_file(name, size=MIB, faults=[str(status)])
    part.write_bytes(b"x" * 100)
    error = failure(url(sim, name), part)
    assert (error.reason, error.permanent, error.http_status) == ("not_found", True, status)
    assert not part.exists()
    assert [e["range"] for e in requests_for(sim, name)] == ["bytes=100-"]


def test_unknown_file_is_not_found(sim: SimulatorServer, part: Path) -> None:
    error = failure(url(sim, "never-added"), part)
    assert (error.reason, error.http_status, error.url) == ("not_found", 404, url(sim, "never-added"))


@pytest.mark.parametrize("fault", [None, "chunked"])
def test_size_cap(sim: SimulatorServer, part: Path, fault: str | None) -> None:
    """Refused from Content-Length before reading, or (without one) as soon as the cap is passed."""
    name = f"huge-{fault}"
    sim.state.add_file(name, size=3 * MIB, faults=[fault] if fault else [])
    error = failure(url(sim, name), part, replace(POLICY, max_bytes=MIB))
    assert (error.reason, error.permanent) == ("too_large", True)
    assert ("announces" in str(error)) is (fault is None)
    assert not part.exists()


def test_chunked_body_without_length(sim: SimulatorServer, part: Path) -> None:
    sim.state.add_file("chunks", size=2 * MIB + 7, faults=["chunked"])
    assert_complete(sim, "chunks", download(url(sim, "chunks"), part, POLICY), 2 * MIB + 7)


def test_connection_refused_is_temporary(part: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = failure(f"http://127.0.0.1:{port}/x", part, replace(POLICY, attempts=1))
    assert (error.reason, error.permanent) == ("connection", False)


def test_busy_part_file(sim: SimulatorServer, part: Path) -> None:
    sim.state.add_file("busy", size=MIB)
    with part.open("ab") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        error = failure(url(sim, "busy"), part)
    assert (error.reason, error.permanent) == ("busy", False) and part.exists()
    assert requests_for(sim, "busy") == []


def test_simulator_ranges_and_control_api(sim: SimulatorServer) -> None:
    data = bytes(range(256)) * 40
    sim.state.add_file("ranged", data=data)
    with httpx.Client(base_url=sim.url, trust_env=False) as client:
        full = client.get("/files/extra/ranged")
        etag = full.headers["ETag"]
        assert (full.status_code, full.content, full.headers["Accept-Ranges"]) == (200, data, "bytes")
        tail = client.get("/files/extra/ranged", headers={"Range": "bytes=10000-", "If-Range": etag})
        assert (tail.status_code, tail.content) == (206, data[10000:])
        assert tail.headers["Content-Range"] == f"bytes 10000-10239/{len(data)}"
        suffix = client.get("/files/extra/ranged", headers={"Range": "bytes=-5"})
        assert (suffix.status_code, suffix.content) == (206, data[-5:])
        changed = client.get("/files/extra/ranged", headers={"Range": "bytes=5-", "If-Range": '"other"'})
        assert (changed.status_code, changed.content) == (200, data)
        beyond = client.get("/files/extra/ranged", headers={"Range": "bytes=99999-"})
        assert (beyond.status_code, beyond.headers["Content-Range"]) == (416, f"bytes */{len(data)}")
        spec = {"size": 1000, "faults": ["503"], "ranges": False}
        assert client.put("/_sim/files/remote", json=spec).status_code == 200
        assert client.put("/_sim/files/remote", json={"faults": ["boom"]}).status_code == 400
        assert client.get("/files/extra/remote").status_code == 503
        plain = client.get("/files/extra/remote", headers={"Range": "bytes=10-"})
        assert (plain.status_code, len(plain.content), "etag" in plain.headers) == (200, 1000, False)
        logged = client.get("/_sim/file-requests").json()
    assert [(e["status"], e["fault"]) for e in logged if e["name"] == "remote"] == [(503, "503"), (200, None)]


def test_task_videos_point_at_extra_files(sim: SimulatorServer, part: Path) -> None:
    """The `video_files` scenario key, as the service's archive tests will use it."""
    sim.state.add_file("first.mp4", size=MIB, faults=["truncate"])
    sim.state.set_scenario(
        "with-files", {"steps": [{"status": "succeed"}], "video_files": ["first.mp4", "x"]}
    )
    body = {"image": "https://example.com/a.jpg", "external_task_id": "with-files"}
    auth = {"Authorization": "Bearer any"}
    with httpx.Client(base_url=sim.url, headers=auth, trust_env=False) as client:
        assert client.post("/v1/videos/image2video", json=body).status_code == 200
        task = client.get("/v1/videos/image2video/with-files").json()["data"]
    videos = task["task_result"]["videos"]
    assert [video["url"] for video in videos] == [url(sim, "first.mp4"), url(sim, "x")]
    assert_complete(sim, "first.mp4", download(videos[0]["url"], part, POLICY), MIB)
    with pytest.raises(ValueError, match="video_files"):
        sim.state.set_scenario("bad", {"video_files": ["a/b"]})


# --- the address guard ---


def test_loopback_needs_allow_listing(sim: SimulatorServer, part: Path) -> None:
    sim.state.add_file("local", size=MIB)
    error = failure(url(sim, "local"), part, replace(POLICY, allowed_hosts=frozenset()))
    assert (error.reason, error.permanent) == ("blocked_address", True)
    assert "127.0.0.1" in str(error) and "loopback" in str(error)
    assert requests_for(sim, "local") == [] and not part.exists()


@pytest.mark.parametrize(
    "host",
    [
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "224.0.0.1",
        "0.0.0.0",
        "240.0.0.1",
        "[::1]",
        "[fd00::1]",
        "[fe80::1]",
        "[ff02::1]",
        "[::]",
        "[::ffff:10.0.0.1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:169.254.169.254]",
        "[64:ff9b::a00:1]",
        "[2002:c0a8:101::1]",
    ],
)
def test_internal_addresses_are_refused_before_connecting(part: Path, host: str) -> None:
    error = failure(f"http://{host}/latest/meta-data", part)
    assert (error.reason, error.permanent) == ("blocked_address", True)
    assert host.strip("[]").split(":")[-1] in str(error)


def test_name_resolving_to_internal_address(monkeypatch: pytest.MonkeyPatch, part: Path) -> None:
    fake_dns(monkeypatch, {"cdn.internal.test": ["10.1.2.3", "fd12::3"]})
    error = failure("http://cdn.internal.test/video.mp4", part)
    assert error.reason == "blocked_address"
    assert "cdn.internal.test" in str(error) and "10.1.2.3 (private)" in str(error)


def test_only_checked_addresses_are_connected(
    sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch, part: Path
) -> None:
    """A name resolving to internal and allowed addresses: only the allowed one is connected to."""
    fake_dns(monkeypatch, {"mixed.test": ["10.9.9.9", "127.0.0.1"]})
    sim.state.add_file("mixed", size=MIB)
    target = url(sim, "mixed").replace("127.0.0.1", "mixed.test")
    assert_complete(sim, "mixed", download(target, part, POLICY), MIB)


def test_allow_listed_name(sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch, part: Path) -> None:
    fake_dns(monkeypatch, {"minio.test": ["127.0.0.1"]})
    sim.state.add_file("named", size=MIB)
    target = url(sim, "named").replace("127.0.0.1", "minio.test")
    assert failure(target, part, replace(POLICY, allowed_hosts=frozenset())).reason == "blocked_address"
    result = download(target, part, replace(POLICY, allowed_hosts=frozenset({"minio.test"})))
    assert_complete(sim, "named", result, MIB)


def test_redirects(sim: SimulatorServer, part: Path) -> None:
    sim.state.add_file("target", size=MIB)
    sim.state.add_file("hop2", redirect_to="/files/extra/target")
    sim.state.add_file("hop1", redirect_to=url(sim, "hop2"))
    result = download(url(sim, "hop1"), part, POLICY)
    assert_complete(sim, "target", result, MIB)
    assert result.final_url == url(sim, "target")


def test_redirect_to_internal_address(sim: SimulatorServer, part: Path) -> None:
    sim.state.add_file("bounce", redirect_to="http://10.0.0.1/x")
    error = failure(url(sim, "bounce"), part)
    assert (error.reason, error.permanent) == ("blocked_address", True) and "10.0.0.1" in str(error)
    assert [e["status"] for e in requests_for(sim, "bounce")] == [302]


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher:x"])
def test_redirect_to_bad_url(sim: SimulatorServer, part: Path, location: str) -> None:
    name = f"bad-{len(location)}"
    sim.state.add_file(name, redirect_to=location)
    assert failure(url(sim, name), part).reason == "bad_url"


def test_too_many_redirects(sim: SimulatorServer, part: Path) -> None:
    sim.state.add_file("ping", redirect_to=url(sim, "pong"))
    sim.state.add_file("pong", redirect_to=url(sim, "ping"))
    error = failure(url(sim, "ping"), part, replace(POLICY, max_redirects=3))
    assert (error.reason, error.permanent) == ("too_many_redirects", True)
    assert len(requests_for(sim, "ping") + requests_for(sim, "pong")) == 4


@pytest.mark.parametrize(
    "target", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/", "http:///x", "http://[::1"]
)
def test_non_http_urls(part: Path, target: str) -> None:
    error = failure(target, part)
    assert (error.reason, error.permanent) == ("bad_url", True)


def test_errors_do_not_leak_credentials(part: Path) -> None:
    error = failure("http://user:s3cret@10.0.0.1/v.mp4?token=abc123", part)
    assert error.url == "http://10.0.0.1/v.mp4"
    assert "s3cret" not in str(error) and "abc123" not in str(error)


def fake_dns(monkeypatch: pytest.MonkeyPatch, names: dict[str, list[str]]) -> None:
    """Resolve these test-only names to the given addresses; anything else resolves as usual."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in names:
            return real(host, port, *args, **kwargs)
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in names[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
