"""`scripts/up` as a newcomer meets it: run for real in a copy of the checkout, on free ports, with a
Redis of the test's own, and `scripts/kws` run beside it as from a second shell. Also the dev file's
place among the settings' sources, and what the console shows of a child that dies."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import PrivateRedis, die_with_parent, free_port, wait_for
from webhook_service.config import Settings
from webhook_service.dev_env import first_line

ROOT = Path(__file__).resolve().parent.parent
CODE = ["Procfile", "gunicorn.conf.py", "wsgi.py", "requirements.txt"]
PACKAGES = ["webhook_service", "workers", "kling_simulator", "scripts"]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The code a clone has, with this run's .venv, and no .env or data/ yet."""
    copy = tmp_path / "checkout"
    copy.mkdir()
    for name in CODE:
        shutil.copy2(ROOT / name, copy / name)
    for name in PACKAGES:
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / ".venv").symlink_to(sys.prefix)
    return copy


def clean_env(**extra: str) -> dict[str, str]:
    """What a new shell has: none of the service's settings."""
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **extra}


def descendants(pid: int) -> set[int]:
    """Every process under `pid`, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


@pytest.fixture
def up(checkout: Path, request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[bytes], Path, str]]:
    """scripts/up.py running in `checkout` (its console in console.txt), and the service's URL.
    Stopped as Ctrl-C stops it; whatever it started is killed anyway, even when the test failed.
    With the parameter "no redis", nothing answers at REDIS_URL: `up` starts a redis-server itself; with
    "ipv6", HOST=::1 binds the web to IPv6's loopback alone."""
    own_redis = getattr(request, "param", "") == "no redis"
    ipv6 = getattr(request, "param", "") == "ipv6"
    redis_server = PrivateRedis() if own_redis else PrivateRedis().start()
    redis_url = f"redis://127.0.0.1:{free_port()}/0" if own_redis else redis_server.url
    port = free_port()
    env = clean_env(
        PORT=str(port),
        SIMULATOR_PORT=str(free_port()),
        WEBHOOK_RECEIVER_PORT=str(free_port()),
        REDIS_URL=redis_url,
        WEB_CONCURRENCY="1",
        WORKER_PROCESSES="1",
        **({"HOST": "::1"} if ipv6 else {}),
    )
    console = checkout / "console.txt"
    with console.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "scripts/up.py"],
            cwd=checkout,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    seen: set[int] = set()
    try:
        wait_for(
            lambda: "Ctrl-C stops everything" in console.read_text() or process.poll() is not None,
            timeout=45,
            interval=0.1,
            what="scripts/up to finish its demo",
        )
        seen = descendants(process.pid)
        yield process, console, f"http://{'[::1]' if ipv6 else '127.0.0.1'}:{port}"
    finally:
        seen |= descendants(process.pid)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
        for pid in [process.pid, *seen]:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        process.wait()
        redis_server.stop()


def test_up_shows_a_short_summary_and_the_cli_beside_it_sees_the_demo(
    up: tuple[subprocess.Popen[bytes], Path, str], checkout: Path
) -> None:
    process, console, base_url = up
    text = console.read_text()
    assert process.poll() is None, text
    lines = text.splitlines()
    assert not [line for line in lines if line.startswith("{")], "JSON lines on the console"
    assert len(lines) < 30, text
    for step in ("redis", "simulator", "webhooks", "web", "workers"):
        assert re.search(rf"^{step} +\S", text, re.M), f"no {step} line in:\n{text}"
    assert re.search(rf"^ready +dashboard {base_url}/ +API docs {base_url}/docs$", text, re.M), text
    demo_task = re.search(r"^demo +submitted (kws-\w+)", text, re.M)
    assert demo_task is not None, text
    external_id = demo_task.group(1)
    for event in ("task.submitted", "task.succeeded", "task.archived"):
        verified = rf"^webhook +{event} +evt_\w+ +signature verified +{external_id}$"
        assert re.search(verified, text, re.M), f"no verified {event} in:\n{text}"
    assert re.search(r"^demo +video archived: data/archive/\S+\.mp4$", text, re.M), text
    assert "./scripts/kws submit --image" in text

    logs = checkout / "data" / "logs"
    web_log = (logs / "web.log").read_text().splitlines()
    assert web_log and all(json.loads(line)["level"] for line in web_log if line.startswith("{"))
    assert any(line.startswith("{") for line in (logs / "worker.log").read_text().splitlines())
    assert (logs / "simulator.log").is_file()

    dev_file = checkout / "data" / "dev.env"
    assert dev_file.stat().st_mode & 0o777 == 0o600
    dev = dict(re.findall(r'^(\w+)="(.*)"$', dev_file.read_text(), re.M))
    simulator_url = dev["KLING_API_BASE"]
    assert simulator_url.startswith("http://127.0.0.1:") and dev["KLING_API_TOKEN"]
    children = descendants(process.pid)
    assert any("kling_simulator" in cmdline(pid) for pid in children)
    assert not [pid for pid in children if dev["KLING_API_TOKEN"] in cmdline(pid)]

    # A second shell: no activation, no settings, only the checkout.
    kws = subprocess.run(
        ["scripts/kws", "tasks", "list", "--json"],
        cwd=checkout,
        env=clean_env(),
        capture_output=True,
        timeout=30,
    )
    assert kws.returncode == 0, kws.stderr.decode()
    assert external_id in {task["external_task_id"] for task in json.loads(kws.stdout)}
    elsewhere = subprocess.run(
        ["./kws", "tasks", "list"], cwd=checkout / "scripts", env=clean_env(), capture_output=True, timeout=30
    )
    assert elsewhere.returncode == 2 and f"Run it from {checkout}" in elsewhere.stderr.decode()

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=20) == 0
    assert not dev_file.exists()
    wait_for(lambda: not [pid for pid in children if Path(f"/proc/{pid}").exists()], what="children gone")
    assert "stopping everything" in console.read_text()


@pytest.mark.parametrize("up", ["no redis"], indirect=True)
def test_up_starts_its_own_redis_with_an_append_only_file_when_none_answers(
    up: tuple[subprocess.Popen[bytes], Path, str], checkout: Path
) -> None:
    """A fresh machine: no Redis running, redis-server installed."""
    process, console, _ = up
    text = console.read_text()
    assert process.poll() is None, text
    started = r"^redis +started redis-server on 127\.0\.0\.1:\d+, its data in data/redis/$"
    assert re.search(started, text, re.M), text
    assert re.search(r"^demo +video archived: ", text, re.M), text
    assert list((checkout / "data" / "redis").rglob("*.aof")), "no append-only file"
    redis_children = [pid for pid in descendants(process.pid) if "redis-server" in cmdline(pid)]
    assert redis_children
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=20) == 0
    wait_for(lambda: not [p for p in redis_children if Path(f"/proc/{p}").exists()], what="redis stopped")


@pytest.mark.parametrize("up", ["ipv6"], indirect=True)
def test_up_waits_for_the_web_where_host_binds_it(up: tuple[subprocess.Popen[bytes], Path, str]) -> None:
    """HOST=::1: gunicorn binds [::1] (not "::1:PORT", which it cannot parse), `up` polls it there rather
    than at 127.0.0.1, where nothing listens, and the demo's callbacks come back to it."""
    process, console, base_url = up
    text = console.read_text()
    assert process.poll() is None, text
    assert re.search(rf"^ready +dashboard {re.escape(base_url)}/ ", text, re.M), text
    assert re.search(r"^demo +video archived: ", text, re.M), text
    assert httpx.get(f"{base_url}/readyz", timeout=5).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(base_url.replace("[::1]", "127.0.0.1") + "/readyz", timeout=5)


def test_settings_come_from_the_environment_then_dotenv_then_the_dev_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("REDIS_URL", "KLING_API_BASE", "KLING_API_TOKEN", "SECRET_KEY", "PUBLIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("READ_SETTINGS_FILES")  # the suite's own processes read no file (conftest.py)
    monkeypatch.setenv("REDIS_URL", "redis://from-environment:6379/0")
    (tmp_path / ".env").write_text("SECRET_KEY=from-dotenv-0123456789\nKLING_API_BASE=http://from-dotenv\n")
    dev_file = tmp_path / "dev.env"
    dev_file.write_text(
        f"{first_line(os.getpid())}\n"  # this process stands for the scripts/up that wrote it: it runs
        'REDIS_URL="redis://from-dev-file:6379/0"\nKLING_API_BASE="http://from-dev-file"\n'
        'KLING_API_TOKEN="from-dev-file"\nPUBLIC_BASE_URL="http://from-dev-file:8000"\n'
    )
    paths = {"dotenv_path": str(tmp_path / ".env"), "dev_env_path": str(dev_file)}

    settings = Settings.from_env(**paths)
    assert settings.redis_url == "redis://from-environment:6379/0"
    assert settings.kling_api_base == "http://from-dotenv"
    assert (settings.kling_api_token, settings.public_base_url) == (
        "from-dev-file",
        "http://from-dev-file:8000",
    )

    monkeypatch.setenv("READ_SETTINGS_FILES", "false")  # as the test suite runs its processes
    monkeypatch.setenv("SECRET_KEY", "from-environment-0123456789")
    ignoring = Settings.from_env(**paths)
    assert ignoring.kling_api_base == "https://api-singapore.klingai.com" and ignoring.kling_api_token == ""
    assert ignoring.public_base_url == "http://localhost:8000"
    monkeypatch.delenv("READ_SETTINGS_FILES")
    monkeypatch.delenv("SECRET_KEY")

    dev_file.unlink()  # scripts/up stopped
    assert Settings.from_env(**paths).kling_api_token == ""


def test_a_dev_file_left_by_a_killed_up_is_ignored_saying_so_and_one_of_a_running_up_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An up killed outright (SIGKILL) leaves data/dev.env behind: its simulator and token are gone."""
    for name in ("KLING_API_BASE", "KLING_API_TOKEN", "SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("READ_SETTINGS_FILES")  # the suite's own processes read no file (conftest.py)
    (tmp_path / ".env").write_text("SECRET_KEY=from-dotenv-0123456789\n")
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed.kill()
    killed.wait()
    dev_file = tmp_path / "dev.env"
    settings_of_up = 'KLING_API_BASE="http://127.0.0.1:9100"\nKLING_API_TOKEN="simulator-token"\n'
    dev_file.write_text(f"{first_line(killed.pid)}\n{settings_of_up}")
    paths = {"dotenv_path": str(tmp_path / ".env"), "dev_env_path": str(dev_file)}

    left_behind = Settings.from_env(**paths)

    assert (
        left_behind.kling_api_token == ""
        and left_behind.kling_api_base == "https://api-singapore.klingai.com"
    )
    warning = capsys.readouterr().err
    why = f"its scripts/up (pid {killed.pid}) no longer runs (remove it, or start ./scripts/up again)"
    assert warning == f"Ignoring {dev_file}: {why}\n"

    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dev_file.write_text(f"{first_line(running.pid)}\n{settings_of_up}")
        read = Settings.from_env(**paths)
    finally:
        running.kill()
        running.wait()
    assert (read.kling_api_base, read.kling_api_token) == ("http://127.0.0.1:9100", "simulator-token")
    assert capsys.readouterr().err == ""


def test_a_child_that_dies_shows_its_last_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from up_children import Children
    from up_console import Console

    children = Children(tmp_path, Console(json_lines=False, colour=False))
    error = '{"level": "ERROR", "message": "cannot go on", "exception": "Traceback\\nValueError: bad"}'
    children.start("web", f"printf '%s\\n' starting '{error}' 'plain last words'; exit 3")
    name = wait_for(children.first_exited, what="the child to exit")
    children.report_exit(name)
    children.stop_all()

    shown = capsys.readouterr().out.splitlines()
    assert "web        ERROR cannot go on (ValueError: bad)" in shown  # an error is shown as it comes
    assert "web        exited with code 3; its last lines (all of them in data/logs/web.log):" in shown
    assert shown[-3:] == ["    starting", "    ERROR cannot go on (ValueError: bad)", "    plain last words"]
    assert (tmp_path / "data" / "logs" / "web.log").read_text().splitlines()[-1] == "plain last words"


def test_log_format_json_shows_every_raw_line_and_ups_own_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from up_children import Children
    from up_console import Console

    monkeypatch.setenv("LOG_FORMAT", "json")
    console = Console.from_env()
    children = Children(tmp_path, console)
    children.start("worker", ["echo", '{"level": "INFO", "message": "cleaning registries"}'])
    wait_for(children.first_exited, what="the child to exit")
    children.stop_all()
    console.step("ready", "dashboard http://127.0.0.1:8000/")

    raw, own = capsys.readouterr().out.splitlines()
    assert json.loads(raw) == {"level": "INFO", "message": "cleaning registries"}
    assert json.loads(own)["process"] == "ready" and json.loads(own)["message"].startswith("dashboard")
