"""The operator's `flask` commands, with click's runner against real Redis, the simulator, and (for
`submit --wait` and deliveries) real workers. Exit codes: 0 ok, 1 failed or not found, 2 usage or
validation, 3 Redis or Kling unavailable."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from flask import Flask

from tests.conftest import Service, Workers, make_service
from tests.support import free_port, loopback_name, wait_for
from webhook_service.web.app import create_app

URL_IMAGE = "https://example.com/a.jpg"
ROOT = Path(__file__).resolve().parent.parent


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=list(args))


@pytest.fixture
def running(env: dict[str, str]) -> Iterator[Service]:
    """The service (callbacks reach it) and one worker (archive, notifications)."""
    service, server, service_env = make_service({**env, "ARCHIVE_RETRY_BASE_S": "0"})
    workers = Workers(service_env)
    workers.start()
    yield service
    workers.stop()
    server.stop()


def test_submit_sends_the_validated_request_and_tasks_show_it(
    service: Service, simulator, tmp_path: Path
) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(os.urandom(2048))
    result = run(
        service.app,
        *("submit", "--image", str(image), "--prompt", "a cat", "--duration", "5"),
        *("--camera-control", '{"type": "simple", "config": {"zoom": 5}}', "--external-task-id", "cli-1"),
        *("--extra", '{"watermark_info": {"enabled": false}}'),
    )
    assert result.exit_code == 0, result.output
    assert "external_task_id: cli-1" in result.stdout and "status: submitted" in result.stdout
    (upstream,) = simulator.state.tasks()
    sent = upstream["request"]
    assert sent["image"] == base64.b64encode(image.read_bytes()).decode()  # raw Base64, no data: prefix
    assert sent["camera_control"] == {"type": "simple", "config": {"zoom": 5}}
    assert sent["watermark_info"] == {"enabled": False}

    shown = run(service.app, "tasks", "show", "cli-1")
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["external_task_id"] == "cli-1"
    assert run(service.app, "tasks", "show", "nope").exit_code == 1

    wait_for(lambda: service.task("cli-1")["task_status"] == "succeed", what="the callbacks")
    listed = run(service.app, "tasks", "list", "--status", "succeed", "--json")
    assert [task["external_task_id"] for task in json.loads(listed.stdout)] == ["cli-1"]
    assert "cli-1" in run(service.app, "tasks", "list").stdout
    assert json.loads(run(service.app, "tasks", "list", "--status", "failed", "--json").stdout) == []


def test_an_invalid_request_is_refused_with_every_problem_and_nothing_is_sent(
    service: Service, tmp_path: Path
) -> None:
    result = run(service.app, "submit", "--prompt", "a cat", "--duration", "7", "--extra", '{"promt": "x"}')
    assert result.exit_code == 2
    duration = 'duration: "7" s is only supported by kling-v3; kling-v1 takes "5" or "10"'
    for problem in ("image: is required", duration, "promt: unknown field"):
        assert problem in result.stderr
    assert service.services.store.newest(0, 10) == []
    missing = run(service.app, "submit", "--image", str(tmp_path / "missing.png"))
    assert missing.exit_code == 2 and "neither an http(s) URL nor a file" in missing.stderr
    assert run(service.app, "submit", "--image", URL_IMAGE, "--camera-control", "{oops").exit_code == 2
    clash = run(service.app, "submit", "--image", URL_IMAGE, "--extra", f'{{"image": "{URL_IMAGE}"}}')
    assert clash.exit_code == 2


def test_refused_upstream_is_1_and_unavailable_upstream_is_3(env: dict[str, str], simulator) -> None:
    service, server, _ = make_service(env, SUBMIT_WAIT_S="0.5")
    try:
        simulator.state.set_scenario(
            "refused", {"create_error": {"http": 400, "code": 1201, "message": "no"}}
        )
        refused = run(service.app, "submit", "--image", URL_IMAGE, "--external-task-id", "refused")
        assert refused.exit_code == 1 and "code 1201" in refused.stderr
        again = run(service.app, "submit", "--image", URL_IMAGE, "--external-task-id", "refused")
        assert again.exit_code == 2 and "already used" in again.stderr

        down = {"create_error": {"http": 503, "code": 5001, "message": "maintenance"}}
        simulator.state.set_scenario("down", down)
        unavailable = run(service.app, "submit", "--image", URL_IMAGE, "--external-task-id", "down")
        assert unavailable.exit_code == 3, unavailable.output
        assert "Kling is unavailable" in unavailable.stderr and "queued" in unavailable.stderr
    finally:
        server.stop()


def test_redis_unavailable_is_3(env: dict[str, str]) -> None:
    app = create_app({**env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    for args in (("tasks", "list"), ("submit", "--image", URL_IMAGE), ("deliveries", "list")):
        result = run(app, *args)
        assert result.exit_code == 3, (args, result.output)
        assert "Redis is unavailable" in result.stderr


def test_submit_wait_shows_each_status_until_archived(running: Service, tmp_path: Path) -> None:
    result = run(
        running.app,
        *("submit", "--image", URL_IMAGE, "--external-task-id", "wait-1", "--wait", "--timeout", "60"),
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    steps = [(float(m[1]), m[2]) for line in lines if (m := re.match(r"\s*(\d+\.\d)s  (\S+)", line))]
    states = [state for _, state in steps]
    assert states[-1] == "archived" and "succeed" in states, lines
    assert [at for at, _ in steps] == sorted(at for at, _ in steps)
    archived = [line for line in lines if line.startswith("video ")]
    path = Path(archived[0].split(": ", 1)[1].split("  (")[0])
    assert path.is_file() and path.suffix == ".mp4"
    assert archived[0].endswith(f"({running.url}/v1/tasks/wait-1/videos/0)")


def test_submit_wait_ends_with_1_when_the_task_fails(running: Service, simulator) -> None:
    simulator.state.set_scenario("fails", {"steps": [{"status": "failed", "delay": 0.2, "message": "nsfw"}]})
    result = run(running.app, "submit", "--image", URL_IMAGE, "--external-task-id", "fails", "--wait")
    assert result.exit_code == 1
    assert "failed" in result.stdout and "task failed: nsfw" in result.stderr


def test_deliveries_list_and_replay(running: Service) -> None:
    # A client callback_url that resolves to loopback is refused at delivery: a dead letter at once.
    # (At an address it would be refused at submission already.)
    submitted = run(
        running.app,
        "submit",
        "--image",
        URL_IMAGE,
        "--external-task-id",
        "dl-1",
        "--callback-url",
        f"http://{loopback_name()}:9/",
    )
    assert submitted.exit_code == 0, submitted.output

    def dead_letters() -> list[dict[str, str]]:
        return json.loads(run(running.app, "deliveries", "list", "--status", "failed", "--json").stdout)

    letter = wait_for(dead_letters, timeout=60, what="a dead letter")[0]
    assert letter["external_task_id"] == "dl-1" and letter["reason"] == "refused"
    table = run(running.app, "deliveries", "list", "--task", "dl-1").stdout
    assert letter["id"] in table and "failed" in table

    replayed = run(running.app, "deliveries", "replay", letter["id"])
    assert replayed.exit_code == 0 and letter["id"] in replayed.stdout
    assert run(running.app, "deliveries", "replay", "dlv_nope").exit_code == 1
    assert run(running.app, "deliveries", "replay").exit_code == 2
    assert run(running.app, "deliveries", "replay", letter["id"], "--since", "1h").exit_code == 2
    assert run(running.app, "deliveries", "replay", "--since", "yesterday-ish").exit_code == 2
    wait_for(dead_letters, timeout=60, what="the replayed delivery to fail again")
    since = run(running.app, "deliveries", "replay", "--since", "1h")
    assert since.exit_code == 0 and "replayed 1 failed deliveries" in since.stdout
    # The notifications' own command still works.
    assert run(running.app, "replay-failed", "--since", "1h").exit_code == 0


def test_simulator_command_serves_kling_with_the_services_credentials(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[list[str]] = []
    monkeypatch.setattr("kling_simulator.__main__.main", started.append)
    assert run(create_app(env), "simulator", "--port", "9555").exit_code == 0
    assert started == [["--host", "127.0.0.1", "--port", "9555", "--token", env["KLING_API_TOKEN"]]]


def test_the_log_on_stderr_shows_warnings_and_errors_only_unless_verbose(env: dict[str, str]) -> None:
    """`submit` as a person runs it (a process of its own, its logging as wsgi.py sets it up): the
    service's INFO lines (httpx's requests, a task's changes) stay off stderr unless -v asks for them;
    a warning still shows."""

    def submit(*extra: str, **settings: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "flask", "--app", "wsgi", "submit", "--image", URL_IMAGE, *extra]
        return subprocess.run(
            command,
            cwd=ROOT,
            env={**os.environ, **env, **settings},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def logged(stderr: str) -> list[dict[str, str]]:
        return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]

    quiet = submit()
    assert quiet.returncode == 0 and "task_id: " in quiet.stdout, quiet.stderr
    assert [line for line in logged(quiet.stderr) if line["level"] == "INFO"] == []
    verbose = submit("-v")
    assert verbose.returncode == 0, verbose.stderr
    assert {"httpx", "webhook_service.domain.lifecycle"} <= {
        line["logger"] for line in logged(verbose.stderr)
    }
    unreachable = submit("--timeout", "5", KLING_API_BASE=f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 3
    assert [line["level"] for line in logged(unreachable.stderr)] == ["WARNING"]  # "create ... deferred"
