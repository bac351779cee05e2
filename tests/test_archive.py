"""Archiving end to end: real RQ workers in subprocesses, the simulator's file server, a real archive."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from rq import Queue
from rq.registry import StartedJobRegistry

from tests.conftest import Service, Workers, make_service
from tests.support import wait_for
from webhook_service.jobs import ARCHIVE_QUEUE, JOB_MONITORING_INTERVAL_S

IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a cat"}
MIB = 1024 * 1024


@pytest.fixture
def archive_env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "ARCHIVE_RETRY_BASE_S": "0"}


@pytest.fixture
def running(archive_env: dict[str, str]) -> Iterator[tuple[Service, Workers]]:
    service, server, service_env = make_service(archive_env)
    workers = Workers(service_env)
    workers.start()
    yield service, workers
    workers.stop()
    server.stop()


def task_view(service: Service, external_id: str) -> dict[str, Any]:
    response = service.http.get(f"/v1/tasks/{external_id}")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def wait_archive_state(service: Service, external_id: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (t := task_view(service, external_id))["archive_state"] in ("archived", "archive_failed") and t
        ),
        timeout=timeout,
        what=f"archive of {external_id} to finish",
    )


def submit_with_file(service: Service, simulator, external_id: str, file_name: str, **body: Any) -> None:
    simulator.state.set_scenario(
        external_id, {"video_files": [file_name], "steps": [{"status": "succeed", "delay": 0}]}
    )
    response = service.submit({**IMAGE, "external_task_id": external_id, **body})
    assert response.status_code == 200, response.text


def archive_files(root: Path) -> list[Path]:
    """The files the archive job wrote: not a task's inputs/, written when the task is recorded."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.parent.name != "inputs")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def test_multi_megabyte_video_is_archived_with_its_checksum(running, simulator, archive_env) -> None:
    service, _ = running
    simulator.state.add_file("big.mp4", size=12 * MIB)
    submit_with_file(service, simulator, "big-1", "big.mp4")

    task = wait_archive_state(service, "big-1")
    assert task["archive_state"] == "archived", task["archive_error"]
    (video,) = task["archived_videos"]
    assert video["size"] == 12 * MIB and video["sha256"] == simulator.state.expected_sha256("big.mp4")

    root = Path(archive_env["ARCHIVE_URL"])
    visible = [p for p in archive_files(root) if not p.name.startswith(".")]
    assert [p.name for p in visible] == [f"{video['video_id']}.mp4", "metadata.json"]
    assert sha256_of(visible[0]) == video["sha256"]
    assert not [p for p in archive_files(root) if p.name.endswith(".part")]
    assert visible[0].relative_to(root).parts[3] == "big-1"  # <yyyy>/<mm>/<dd>/<external_task_id>/

    metadata = json.loads(visible[1].read_text())
    assert metadata["external_task_id"] == "big-1" and metadata["videos"][0]["sha256"] == video["sha256"]
    assert metadata["videos"][0]["source_url"].endswith("/files/extra/big.mp4")
    assert [e["event"] for e in metadata["history"]][:1] == ["created"]

    kling = service.task("big-1")["task_result"]["videos"][0]
    assert kling["url"].endswith("/files/extra/big.mp4") and kling["archive_url"] == video["url"]


def test_archived_video_is_served_with_range(running, simulator) -> None:
    service, _ = running
    simulator.state.add_file("clip.mp4", size=3 * MIB)
    submit_with_file(service, simulator, "ranged", "clip.mp4")
    wait_archive_state(service, "ranged")
    whole = httpx.get(f"{simulator.url}/files/extra/clip.mp4").content

    full = service.http.get("/v1/tasks/ranged/videos/0")
    part = service.http.get("/v1/tasks/ranged/videos/0", headers={"Range": "bytes=1000-1999"})
    assert full.status_code == 200 and full.content == whole and full.headers["Content-Type"] == "video/mp4"
    assert part.status_code == 206 and part.content == whole[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(whole)}"
    assert service.http.get("/v1/tasks/ranged/videos/1").status_code == 404


def test_truncated_dropped_and_5xx_answers_are_retried_and_resumed(running, simulator) -> None:
    service, _ = running
    simulator.state.add_file("flaky.mp4", size=4 * MIB, faults=["truncate", "503", "drop", "500"])
    submit_with_file(service, simulator, "flaky", "flaky.mp4")

    task = wait_archive_state(service, "flaky")
    assert task["archive_state"] == "archived", task["archive_error"]
    assert task["archived_videos"][0]["sha256"] == simulator.state.expected_sha256("flaky.mp4")
    ranges = [r["range"] for r in simulator.state.file_requests() if r["name"] == "flaky.mp4"]
    assert any(r and r.startswith("bytes=") and r != "bytes=0-" for r in ranges), ranges


def test_not_found_is_a_permanent_failure_with_the_hosts_status(running, simulator, archive_env) -> None:
    service, _ = running
    simulator.state.add_file("gone.mp4", size=MIB, faults=["404"] * 20)
    submit_with_file(service, simulator, "gone", "gone.mp4")

    task = wait_archive_state(service, "gone")
    assert task["archive_state"] == "archive_failed"
    assert task["archive_error"]["reason"] == "not_found" and task["archive_error"]["http_status"] == 404
    assert len([r for r in simulator.state.file_requests() if r["name"] == "gone.mp4"]) == 1  # not retried
    assert archive_files(Path(archive_env["ARCHIVE_URL"])) == []


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [({"DOWNLOAD_MAX_BYTES": str(MIB)}, "too_large"), ({"DOWNLOAD_ALLOWED_HOSTS": ""}, "blocked_address")],
    ids=["max size", "loopback not allow-listed"],
)
def test_refused_downloads_fail_the_archive_with_a_reason(
    archive_env, simulator, overrides: dict[str, str], reason: str
) -> None:
    service, server, service_env = make_service(archive_env, **overrides)
    workers = Workers(service_env)
    workers.start()
    try:
        simulator.state.add_file("two.mp4", size=2 * MIB)
        submit_with_file(service, simulator, "refused", "two.mp4")
        task = wait_archive_state(service, "refused")
        assert task["archive_state"] == "archive_failed" and task["archive_error"]["reason"] == reason
        assert archive_files(Path(archive_env["ARCHIVE_URL"])) == []
    finally:
        workers.stop()
        server.stop()


def test_rerunning_the_job_for_an_archived_task_does_nothing(running, simulator) -> None:
    service, _ = running
    simulator.state.add_file("once.mp4", size=MIB)
    submit_with_file(service, simulator, "once", "once.mp4")
    before = wait_archive_state(service, "once")
    requests_before = len(simulator.state.file_requests())

    Queue(ARCHIVE_QUEUE, connection=service.services.redis).enqueue_call(
        "workers.archive.archive_task", args=("once",), job_id="archive-again"
    )
    wait_for(
        lambda: Queue(ARCHIVE_QUEUE, connection=service.services.redis).fetch_job("archive-again").is_finished
    )
    assert len(simulator.state.file_requests()) == requests_before
    assert task_view(service, "once")["archived_videos"] == before["archived_videos"]


def test_watermarked_copy_is_archived_when_asked_for(running, simulator) -> None:
    service, _ = running
    response = service.submit({**IMAGE, "external_task_id": "wm", "watermark_info": {"enabled": True}})
    assert response.status_code == 200
    task = wait_archive_state(service, "wm")
    assert task["archive_state"] == "archived", task["archive_error"]
    assert sorted(v["kind"] for v in task["archived_videos"]) == ["video", "watermark"]
    assert "watermark_archive_url" in service.task("wm")["task_result"]["videos"][0]


def pids_writing(root: Path) -> list[int]:
    """Processes holding a staging (.part) file under `root` open, once bytes have been written to it:
    the work horse, in the middle of a download."""
    if not any(p.stat().st_size > 0 for p in root.rglob("*.part")):
        return []
    pids = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            targets = [os.readlink(fd) for fd in fd_dir.iterdir()]
        except OSError:
            continue
        if any(t.startswith(str(root)) and t.endswith(".part") for t in targets):
            pids.append(int(fd_dir.parent.name))
    return pids


def test_killed_work_horse_loses_nothing(running, simulator, archive_env) -> None:
    """With WORKER_FORK_QUEUES=archive the download runs in a horse forked for it: killing the horse
    alone (its worker lives on and sees it die) loses nothing either."""
    service, workers = running
    workers.stop()
    forking = Workers({**workers.env, "WORKER_FORK_QUEUES": "archive"})
    worker = forking.start()
    root = Path(archive_env["ARCHIVE_URL"])
    simulator.state.add_file("slow.mp4", size=16 * MIB, faults=["slow"])
    submit_with_file(service, simulator, "horse", "slow.mp4")

    try:
        (horse,) = wait_for(lambda: pids_writing(root), what="the work horse to start writing")
        assert horse != worker.pid
        os.kill(horse, signal.SIGKILL)
        task = wait_archive_state(service, "horse")
    finally:
        forking.stop()
    assert task["archive_state"] == "archived", task["archive_error"]
    assert_one_correct_file(root, task, simulator.state.expected_sha256("slow.mp4"))
    assert_resumed(simulator, "slow.mp4")


def test_killed_worker_loses_nothing(running, simulator, archive_env) -> None:
    """The download runs in the worker's own process (the default): killing the worker kills it."""
    service, workers = running
    (worker,) = workers.processes
    root = Path(archive_env["ARCHIVE_URL"])
    simulator.state.add_file("slow2.mp4", size=16 * MIB, faults=["slow"])
    submit_with_file(service, simulator, "worker", "slow2.mp4")

    (writer,) = wait_for(lambda: pids_writing(root), what="the worker to start writing")
    assert writer == worker.pid
    workers.stop()  # SIGKILL to the worker's process group: the worker and its scheduler
    registry = StartedJobRegistry(ARCHIVE_QUEUE, connection=service.services.redis)
    # Its heartbeat, renewed while the worker lived, lasts JOB_MONITORING_INTERVAL_S + 60 s, not the
    # download's hour: a live worker's maintenance pass finds the job then. Run that pass as it will run
    # then, instead of waiting out the clock in a test.
    assert len(registry.get_expired_job_ids(time.time() + JOB_MONITORING_INTERVAL_S + 61)) == 1
    registry.cleanup(timestamp=time.time() + JOB_MONITORING_INTERVAL_S + 61)
    workers.start()

    task = wait_archive_state(service, "worker")
    assert task["archive_state"] == "archived", task["archive_error"]
    assert_one_correct_file(root, task, simulator.state.expected_sha256("slow2.mp4"))
    assert_resumed(simulator, "slow2.mp4")


def assert_one_correct_file(root: Path, task: dict[str, Any], expected_sha256: str) -> None:
    videos = [p for p in archive_files(root) if p.suffix == ".mp4" and not p.name.startswith(".")]
    assert len(videos) == 1 and sha256_of(videos[0]) == expected_sha256
    assert task["archived_videos"][0]["sha256"] == expected_sha256
    assert not [p for p in archive_files(root) if p.name.endswith(".part")]
    assert [e["event"] for e in task["history"]].count("archived") == 1


def assert_resumed(simulator, name: str) -> None:
    """The retry asked only for the bytes the killed download had not written."""
    ranges = [r["range"] for r in simulator.state.file_requests() if r["name"] == name]

    assert len(ranges) == 2 and ranges[0] is None and ranges[1].startswith("bytes="), ranges
    assert int(ranges[1].removeprefix("bytes=").rstrip("-")) > 0


def test_s3_archive_against_a_real_s3_endpoint(
    archive_env, simulator, bucket: str, moto_url: str, tmp_path
) -> None:
    service, server, service_env = make_service(
        archive_env,
        ARCHIVE_URL=f"s3://{bucket}/videos",
        S3_ENDPOINT_URL=moto_url,
        ARCHIVE_SPOOL_DIR=str(tmp_path / "spool"),
    )
    workers = Workers(service_env)
    workers.start()
    try:
        simulator.state.add_file("s3.mp4", size=5 * MIB, faults=["truncate"])
        submit_with_file(service, simulator, "to-s3", "s3.mp4")
        task = wait_archive_state(service, "to-s3")
        assert task["archive_state"] == "archived", task["archive_error"]
        video = task["archived_videos"][0]

        s3 = boto3.client("s3", endpoint_url=moto_url)
        head = s3.head_object(Bucket=bucket, Key=f"videos/{video['key']}")
        assert head["ContentLength"] == 5 * MIB and head["Metadata"]["sha256"] == video["sha256"]
        folder = video["key"].rsplit("/", 1)[0]
        assert json.loads(s3.get_object(Bucket=bucket, Key=f"videos/{folder}/metadata.json")["Body"].read())
        assert list((tmp_path / "spool").iterdir()) == []  # nothing left in the spool

        answer = service.http.get("/v1/tasks/to-s3/videos/0")
        assert answer.status_code == 302
        part = httpx.get(answer.headers["Location"], headers={"Range": "bytes=0-99"})
        assert (
            part.status_code == 206
            and hashlib.sha256(httpx.get(answer.headers["Location"]).content).hexdigest() == (video["sha256"])
        )
    finally:
        workers.stop()
        server.stop()
