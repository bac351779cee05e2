"""Starting again after an unclean stop: processes killed without cleanup leave their Prometheus files
behind, and at the next start the web process and every worker clear them out at the same moment.
Every start-up step must survive running concurrently with itself, and twice."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from rq import Worker

from tests.conftest import Workers
from tests.support import alive, free_port, wait_for
from tests.test_gunicorn import start_gunicorn
from webhook_service.domain.gauges import exposition
from webhook_service.integrations import metrics
from webhook_service.keys import Keys

ROUNDS = 3
DEAD_PROCESSES = 600  # three files each: enough for the processes' clean-ups to overlap
IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a restart"}


def owners(directory: Path) -> set[int]:
    """The processes whose metric files are in the directory (a work horse's are its worker's)."""
    return {int(m[1]) for p in directory.glob("*.db") if (m := re.search(r"_(\d+)(?:job)?\.db$", p.name))}


def leave_files_of_dead_processes(directory: Path, count: int) -> None:
    """What `kill -9` leaves: valid metric files named after processes that no longer exist (each
    appears whole, as a live process's file would). Their pids are above the kernel's pid_max, so no
    process started during the test can take one: a real dead pid may be a new process's a moment later
    (pids come round quickly), and a test reading "alive" twice would see two different answers."""
    with tempfile.TemporaryDirectory() as scratch:
        template = Path(scratch) / "template.db"
        values = MmapedDict(str(template))
        labels = ["legacy", "applied"]
        key = mmap_key("kws_callbacks", "kws_callbacks_total", ["shape", "outcome"], labels, "help")
        values.write_value(key, 1.0, 0.0)
        values.close()
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
        for pid in range(pid_max + 1, pid_max + 1 + count):
            for name in (f"counter_{pid}.db", f"histogram_{pid}.db", f"counter_{pid}job.db"):
                shutil.copyfile(template, Path(scratch) / name)
                os.replace(Path(scratch) / name, directory / name)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.timeout(300)
def test_web_and_workers_start_together_over_dead_processes_files(
    env: dict[str, str], simulator, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    for round_ in range(ROUNDS):
        leave_files_of_dead_processes(metrics_dir, DEAD_PROCESSES)
        start_all_then_kill_them(env, metrics_dir, tmp_path / f"gunicorn-{round_}.log", f"restart-{round_}")


def start_all_then_kill_them(
    env: dict[str, str], metrics_dir: Path, log_path: Path, external_id: str
) -> None:
    """The Procfile's processes started at once: all of them serve; then killed, leaving their files."""
    connection = redis.Redis.from_url(env["REDIS_URL"])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    service_env = {
        **env,
        "PUBLIC_BASE_URL": base,
        "METRICS_PUBLIC": "true",
        "WEB_CONCURRENCY": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    workers = Workers(service_env)
    with log_path.open("w") as log:
        web = start_gunicorn(service_env, port, metrics_dir, stderr=log)
    started = [web, workers.start(), workers.start()]
    try:
        wait_for(lambda: _answers(f"{base}/healthz"), timeout=60, what="gunicorn to serve")
        assert httpx.get(f"{base}/metrics", timeout=10).status_code == 200
        wait_for(lambda: Worker.count(connection=connection) == 2, timeout=60, what="both workers")
        body = {**IMAGE, "external_task_id": external_id}
        created = httpx.post(f"{base}/v1/videos/image2video", json=body, timeout=30)
        assert created.status_code == 200, created.text
        wait_for(
            lambda: httpx.get(f"{base}/v1/tasks/{external_id}").json()["data"]["archive_state"] == "archived",
            timeout=60,
            what="a worker to archive the task's video",
        )
        assert [process.poll() for process in started] == [None, None, None]
        dead_owners = {pid for pid in owners(metrics_dir) if not alive(pid)}
        assert dead_owners == set(), sorted(p.name for p in metrics_dir.glob("*.db"))
    finally:
        for process in started:  # an unclean stop: nothing gets to clean up after itself
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        for worker in Worker.all(connection=connection):
            worker.register_death()


def test_clearing_dead_processes_files_twice_at_once_is_harmless(tmp_path: Path) -> None:
    """Clean-ups racing over the same files: each finishes, and only live processes' files stay."""
    metrics_dir, signals = tmp_path / "metrics", tmp_path / "signals"
    metrics_dir.mkdir()
    signals.mkdir()
    leave_files_of_dead_processes(metrics_dir, DEAD_PROCESSES)
    dead = {p.name for p in metrics_dir.glob("*.db")}
    mine = metrics_dir / f"counter_{os.getpid()}.db"
    mine.write_bytes(b"")
    # Each process announces it is loaded, then waits for the word to clear the files all at once.
    script = (
        "import os, sys, time\n"
        "from webhook_service.integrations import metrics\n"
        f"open(os.path.join({str(signals)!r}, str(os.getpid())), 'w').close()\n"
        f"while not os.path.exists(os.path.join({str(signals)!r}, 'go')): time.sleep(0.001)\n"
        "metrics.remove_files_of_dead_processes()\n"
    )
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    runs = [
        subprocess.Popen([sys.executable, "-c", script], env=environment, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    wait_for(lambda: len(list(signals.iterdir())) == 4, timeout=60, what="the four processes to load")
    (signals / "go").touch()
    errors = [run.communicate(timeout=60)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0, 0], errors
    assert mine.exists() and not dead & {p.name for p in metrics_dir.glob("*.db")}


def test_a_scrape_while_processes_start_sees_no_missing_file(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starting processes remove dead processes' files while /metrics may be reading them."""
    monkeypatch.setattr(metrics, "MULTIPROCESS_DIR", str(tmp_path))
    connection = redis.Redis.from_url(redis_url)
    done = threading.Event()
    failures: list[BaseException] = []

    def restarts() -> None:
        script = "from webhook_service.integrations import metrics; metrics.remove_files_of_dead_processes()"
        environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
        try:
            for _ in range(5):  # an unclean stop leaves files, the next start removes them
                leave_files_of_dead_processes(tmp_path, DEAD_PROCESSES)
                subprocess.run([sys.executable, "-c", script], env=environment, check=True, timeout=60)
        finally:
            done.set()

    restarting = threading.Thread(target=restarts)
    restarting.start()
    scrapes = 0
    try:
        while not done.is_set():
            try:
                exposition(connection, Keys())
            except FileNotFoundError as error:
                failures.append(error)
            scrapes += 1
    finally:
        restarting.join(timeout=60)
    assert scrapes > 5 and failures == []
