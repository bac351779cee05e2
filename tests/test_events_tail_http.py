"""A pipeline follows its events from the command line over the HTTP API, with a client key and nothing
else (no SECRET_KEY, no Redis): `python -m webhook_service.cli.events_http`, and `flask events tail
--url`. It sees only its key's tenant's events, resumes from a cursor, follows live, and comes back when
the service says rather than at once."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from kling_simulator import SimulatorServer
from tests.conftest import Service, make_service
from tests.support import LiveServer, wait_for
from tests.test_events_budget import Paused, RecordedSleep
from tests.test_events_stream import (
    LONG_POLL_S,
    PROCESSING_THEN_SUCCEED,
    SILENT,
    create,
    logged,
    read,
    waiting_in_redis,
)
from tests.test_tenants import KEY_A, KEY_B, TENANTS, bearer
from webhook_service.cli.events_http import follow

ROOT = Path(__file__).resolve().parent.parent


def pipeline_tail(service: Service, key: str, *arguments: str, cwd: Path) -> subprocess.Popen[str]:
    """The command as a pipeline's machine runs it: the key in its environment, no service settings."""
    environment = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(cwd), "KWS_API_KEY": key}
    return subprocess.Popen(
        [sys.executable, "-m", "webhook_service.cli.events_http", "--url", service.url, *arguments],
        env=environment,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def lines(process: subprocess.Popen[str]) -> tuple[int, list[dict[str, Any]], str]:
    out, err = process.communicate(timeout=LONG_POLL_S + 30)
    return process.returncode, [json.loads(line) for line in out.splitlines()], err


def test_a_pipeline_follows_its_own_tenants_events_with_only_a_key(
    services_with: Callable[..., Service], simulator: SimulatorServer, tmp_path: Path
) -> None:
    service = services_with(**TENANTS)
    create(service, simulator, "ibis-1", PROCESSING_THEN_SUCCEED, key=KEY_A, tenant="team-a")
    create(service, simulator, "ibis-1", PROCESSING_THEN_SUCCEED, key=KEY_B, tenant="team-b")
    ours = logged(service, 3, key=KEY_A)
    logged(service, 3, key=KEY_B)

    code, printed, _ = lines(pipeline_tail(service, KEY_A, "--until-idle", "1", cwd=tmp_path))
    assert code == 0 and printed == ours  # team-b's three events are not there
    assert {event["tenant"] for event in printed} == {"team-a"}

    code, resumed, _ = lines(
        pipeline_tail(service, KEY_A, "--after", ours[1]["cursor"], "--count", "1", cwd=tmp_path)
    )
    assert code == 0 and resumed == ours[2:]
    repeated = ("--types", "task.submitted", "--types", "task.succeeded", "--until-idle", "1")
    code, picked, _ = lines(pipeline_tail(service, KEY_A, *repeated, cwd=tmp_path))
    assert code == 0 and picked == [ours[0], ours[2]]  # every --types counts, not only the last

    # Live: it waits in a long-poll, and the next event of its tenant comes down it.
    tail = pipeline_tail(service, KEY_A, "--after", ours[-1]["cursor"], "--count", "1", cwd=tmp_path)
    wait_for(lambda: waiting_in_redis(service), what="the tail to wait in a long-poll")
    create(service, simulator, "ibis-2", SILENT, key=KEY_B, tenant="team-b")  # another tenant's: not shown
    late = create(service, simulator, "ibis-2", SILENT, key=KEY_A, tenant="team-a")
    code, (event,), _ = lines(tail)
    assert code == 0 and (event["task_id"], event["type"], event["tenant"]) == (
        late,
        "task.submitted",
        "team-a",
    )

    code, printed, error = lines(pipeline_tail(service, "not-a-key", "--count", "1", cwd=tmp_path))
    assert (code, printed) == (1, []) and "HTTP 401" in error
    code, printed, error = lines(pipeline_tail(service, KEY_A, "--types", "task.done", cwd=tmp_path))
    assert (code, printed) == (2, []) and "--types: " in error and "task.done" in error
    code, printed, error = lines(pipeline_tail(service, KEY_A, "--tenant", "team-b", cwd=tmp_path))
    assert (code, printed) == (2, []) and "--tenant: " in error


def test_flask_events_tail_url_reads_the_api_as_its_key_may(
    services_with: Callable[..., Service], simulator: SimulatorServer
) -> None:
    service = services_with(**TENANTS)
    create(service, simulator, "ibis-3", SILENT, key=KEY_B, tenant="team-b")
    (theirs,) = logged(service, 1, key=KEY_B)
    cli = service.app.test_cli_runner()
    tailed = cli.invoke(
        args=["events", "tail", "--url", service.url, "--until-idle", "1"], env={"KWS_API_KEY": KEY_B}
    )
    assert tailed.exit_code == 0, tailed.output
    assert [json.loads(line) for line in tailed.stdout.splitlines()] == [theirs]


def test_following_over_http_comes_back_when_the_service_says(
    services_with: Callable[..., Service], simulator: SimulatorServer
) -> None:
    """The process's one waiting place is taken: the follower pauses for retry_after_ms, not a request
    again at once."""
    service = services_with(**TENANTS)
    create(service, simulator, "ibis-4", SILENT, key=KEY_A, tenant="team-a")
    (submitted,) = logged(service, 1, key=KEY_A)
    clock = RecordedSleep()
    with (
        ThreadPoolExecutor(max_workers=1) as pool,
        httpx.Client(base_url=service.url, headers=bearer(KEY_A), timeout=LONG_POLL_S + 10) as http,
    ):
        holder = pool.submit(
            read, service, KEY_A, timeout=LONG_POLL_S + 10, after=submitted["cursor"], wait=LONG_POLL_S
        )
        wait_for(lambda: waiting_in_redis(service), what="a long-poll to take the budget")
        events = follow(http, after=submitted["cursor"], types=None, tenant=None, sleep=clock.sleep)
        with contextlib.suppress(Paused):
            next(events)
        assert clock.asked == [5.0]
        create(service, simulator, "ibis-5", SILENT, key=KEY_A, tenant="team-a")  # ends the held long-poll
        assert holder.result(timeout=LONG_POLL_S)["waited"]


def test_following_over_http_rides_out_a_restart_of_the_service(
    env: dict[str, str], simulator: SimulatorServer
) -> None:
    """The service stops under the follower and comes back on the same address: the follower pauses
    (saying why), asks again from the same cursor, and gets what happened meanwhile, nothing twice."""
    service, server, _ = make_service(env, **TENANTS)
    create(service, simulator, "ibis-6", SILENT, key=KEY_A, tenant="team-a")
    (before,) = logged(service, 1, key=KEY_A)
    port = int(service.url.rsplit(":", 1)[1])
    restarted: list[LiveServer] = []
    pauses: list[float] = []

    def come_back(seconds: float) -> None:
        """The follower's pause while nothing answers: the service starts again, on the same port, and
        an event happens while it was away."""
        pauses.append(seconds)
        if not restarted:
            restarted.append(LiveServer(port=port).start(service.app))
            create(service, simulator, "ibis-7", SILENT, key=KEY_A, tenant="team-a")

    try:
        with httpx.Client(base_url=service.url, headers=bearer(KEY_A), timeout=LONG_POLL_S + 10) as http:
            events = follow(http, after=None, types=None, tenant=None, sleep=come_back)
            assert next(events) == before
            server.stop()
            after = next(events)
        assert pauses == [1.0]  # the first of the growing pauses, once
        assert (after["external_task_id"], after["type"]) == ("ibis-7", "task.submitted")
        assert after["cursor"] > before["cursor"]
    finally:
        for again in restarted:
            again.stop()
        service.http.close()
