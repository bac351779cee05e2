"""A lost Redis loses no video: under callback load, Redis is killed (SIGKILL) and restarted from its
append-only file, or flushed entirely (FLUSHALL). Afterwards every task finishes, every video is in the
archive once with the right bytes, fetched from Kling once, and every event reaches the operator's
receiver and the task's own callback_url, each under one webhook-id.

Kling calls back once per status and never again, so the callbacks refused while Redis is down are
lost for good: reconciliation must poll those tasks, and its ticks must come back by themselves.
After a flush, callbacks of tasks the service lost record them again; `flask recover` brings back the
ones that will never call again, as the operator is told to run it (docs/reliability.md).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import Result

from tests.conftest import Service, Workers, make_service
from tests.reliability.scale import scaled
from tests.support import LiveServer, PrivateRedis, Receiver, wait_for
from webhook_service.jobs import periodic_work
from webhook_service.keys import Keys

WHSEC = "whsec_" + "cmVkaXMtbG9zcy1zZWNyZXQtcmVkaXMtbG9zcy0xMjM="
IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a storm over the sea"}
SAMPLE = Path(__file__).resolve().parents[2] / "kling_simulator" / "static" / "sample.mp4"
INTERVAL_S = 2  # RECONCILE_INTERVAL_S
OUTAGE_S = 2


@dataclass
class Run:
    service: Service
    simulator: Any
    receiver: Receiver  # the operator's webhook
    own: Receiver  # every task's callback_url
    redis: redis.Redis
    finals: dict[str, str]  # external_task_id -> the status Kling ends it with
    callbacks_planned: int
    env: dict[str, str]
    server: LiveServer


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(WHSEC)
    yield receiver
    receiver.server.stop()


@pytest.fixture
def own() -> Iterator[Receiver]:
    """The tasks' callback_url: the default tenant signs them with NOTIFY_WEBHOOK_SECRET itself."""
    receiver = Receiver(WHSEC)
    yield receiver
    receiver.server.stop()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """Redis as production should run it: append-only, fsync once a second (a crash loses up to 1 s)."""
    private = PrivateRedis("--appendfsync", "everysec").start()
    yield private
    private.stop()


def start_load(
    env: dict[str, str], simulator, receiver: Receiver, own: Receiver, private: PrivateRedis
) -> Run:
    """Tasks whose callbacks come over the next seconds, some twice, some never (only a poll finds the
    final status); one in five fails. Each asks for its own callback_url, and its video is a file of
    its own at the simulator, so each download is counted."""
    tasks = scaled(40, 200)
    service, server, service_env = make_service(
        env,
        REDIS_URL=private.url,
        NOTIFY_WEBHOOK_URLS=receiver.url,
        NOTIFY_WEBHOOK_SECRET=WHSEC,
        NOTIFY_ALLOWED_HOSTS="127.0.0.1",  # the callback_url receiver is on loopback
        KLING_MAX_CONCURRENCY=str(tasks + 10),
        ARCHIVE_RETRY_BASE_S="1",
        NOTIFY_RETRY_SCHEDULE_S="0.5,1,2,4,8",
        RECONCILE_INTERVAL_S=str(INTERVAL_S),
        RECONCILE_AFTER_S="3",
        RECONCILE_POLLS_PER_S="50",
        KLING_TIMEOUT_S="5",
    )
    rng = random.Random(11)
    finals, planned = {}, 0
    for n in range(tasks):
        external_id = f"loss-{n:04d}"
        finals[external_id] = "failed" if n % 5 == 0 else "succeed"
        processing_at = rng.uniform(0.3, 6)
        final = {"status": finals[external_id], "delay": processing_at + rng.uniform(0.5, 6)}
        final |= {"send": False} if n % 4 == 1 else {"copies": rng.choice([1, 2])}
        simulator.state.add_file(f"{external_id}.mp4", data=SAMPLE.read_bytes())
        steps = [{"status": "processing", "delay": processing_at}, final]
        simulator.state.set_scenario(external_id, {"steps": steps, "video_files": [f"{external_id}.mp4"]})
        planned += 1 + (final.get("copies", 1) if final.get("send", True) else 0)
    connection = redis.Redis.from_url(private.url)
    run = Run(service, simulator, receiver, own, connection, finals, planned, service_env, server)
    for external_id in finals:
        answer = service.submit({**IMAGE, "external_task_id": external_id, "callback_url": own.url})
        assert answer.status_code == 200, answer.text
    return run


def when_a_third_is_called_back(run: Run) -> None:
    wait_for(
        lambda: len(run.simulator.state.callbacks()) >= run.callbacks_planned // 3,
        timeout=60,
        what="a third of the callbacks",
    )


def everything_done(run: Run) -> bool:
    store = run.service.services.store
    expected = {(e, "task.archived" if f == "succeed" else "task.failed") for e, f in run.finals.items()}
    for external_id, final in run.finals.items():
        task = store.get(external_id)
        if task is None or task.status != final or (final == "succeed" and task.archive_state != "archived"):
            return False
    return expected <= set(run.receiver.by_event) and expected <= set(run.own.by_event)


def every_chain_scheduled(run: Run) -> bool:
    names = periodic_work(run.service.services.settings)
    return all(any(run.redis.scan_iter(match=f"rq:job:{name}-*", count=1000)) for name in names)


def reconciliation_ran_since(run: Run, since: float) -> bool:
    passes = run.redis.lrange(Keys().reconcile_passes, 0, -1)
    return any(float(entry.decode().split("-")[0]) >= since for entry in passes)


def check_the_outcome(run: Run) -> None:
    store = run.service.services.store
    assert {e: store.get(e).status for e in run.finals} == run.finals
    succeeded = sorted(e for e, f in run.finals.items() if f == "succeed")
    root = Path(run.service.services.settings.archive_url)
    videos = [p for p in root.rglob("*.mp4") if not p.name.startswith(".")]
    assert sorted(p.parent.name for p in videos) == succeeded  # one file per video, none twice
    expected = hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == expected for p in videos)
    assert not [p for p in root.rglob("*") if p.name.endswith(".part")]
    # Fetched once: a second download over the first file would leave one file with the right bytes.
    fetched = Counter(r["name"] for r in run.simulator.state.file_requests())
    assert fetched == Counter(f"{e}.mp4" for e in succeeded), {n: c for n, c in fetched.items() if c != 1}
    for receiver in (run.receiver, run.own):  # repeats keep their webhook-id
        assert all(len(ids) == 1 for ids in receiver.by_event.values())


def through(
    run: Run,
    fault: Callable[[], None],
    scheduled_within_s: float,
    afterwards: Callable[[], None] = lambda: None,
) -> dict[str, float]:
    """Start two workers, let the load build, apply the fault, then once Kling has said its last word
    (and the operator has done what the docs say, `afterwards`), wait for everything to be done."""
    workers = Workers(run.env)
    try:
        workers.start()
        workers.start()
        when_a_third_is_called_back(run)
        struck = time.time()
        fault()
        back = time.time()
        wait_for(lambda: every_chain_scheduled(run), timeout=scheduled_within_s, what="every chain of ticks")
        scheduled = time.time()
        wait_for(lambda: reconciliation_ran_since(run, back), timeout=60, what="a reconciliation pass")
        ticking = time.time()
        wait_for(lambda: run.simulator.state.pending_callbacks() == 0, timeout=60, what="Kling's last word")
        last_word = time.time()
        afterwards()
        wait_for(lambda: everything_done(run), timeout=90, what="every task finished, archived, notified")
        assert all(process.poll() is None for process in workers.processes)  # none died, none restarted
        return {
            "outage_s": round(back - struck, 2),
            "chains_scheduled_s": round(scheduled - back, 2),
            "first_pass_s": round(ticking - back, 2),
            "done_after_last_callback_s": round(time.time() - last_word, 2),
            "done_after_fault_s": round(time.time() - struck, 2),
        }
    finally:
        workers.stop()


@pytest.mark.timeout(300)
def test_redis_killed_and_restarted_from_its_aof_loses_nothing(
    env: dict[str, str], simulator, receiver: Receiver, own: Receiver, private_redis: PrivateRedis
) -> None:
    run = start_load(env, simulator, receiver, own, private_redis)
    try:

        def kill_and_restart() -> None:
            private_redis.stop()
            time.sleep(OUTAGE_S)  # the outage itself, what the test is about: not a wait for something
            private_redis.start()

        figures = through(run, kill_and_restart, scheduled_within_s=2 * INTERVAL_S)
        refused = [c for c in simulator.state.callbacks() if c["status_code"] != 200]
        assert refused  # some callbacks came while Redis was down, and Kling never sends them again
        check_the_outcome(run)
    finally:
        run.server.stop()
    print(f"\nSIGKILL: {len(run.finals)} tasks, {len(refused)} callbacks refused, {figures}")


@pytest.mark.timeout(300)
def test_redis_flushed_mid_run_loses_nothing(
    env: dict[str, str], simulator, receiver: Receiver, own: Receiver, private_redis: PrivateRedis
) -> None:
    run = start_load(env, simulator, receiver, own, private_redis)
    try:
        recovery: list[Result] = []

        def recover() -> None:
            recovery.append(run.service.app.test_cli_runner().invoke(args=["recover", "--since", "1h"]))
            assert recovery[0].exit_code == 0, recovery[0].output

        # The ticks' schedule is gone with the rest: it must be back within two intervals.
        figures = through(run, run.redis.flushall, scheduled_within_s=2 * INTERVAL_S, afterwards=recover)
        check_the_outcome(run)
        sources = [recovered_by(run, e) for e in run.finals]
        assert "callback" in sources  # callbacks of lost tasks brought them back by themselves
    finally:
        run.server.stop()
    print(f"\nFLUSHALL: {len(run.finals)} tasks, recorded again by {Counter(sources)}, {figures}")
    print(recovery[0].output)


def recovered_by(run: Run, external_id: str) -> str | None:
    history = run.service.services.store.history(external_id)
    return next((h["source"] for h in history if h["event"] == "recovered"), None)


@pytest.mark.timeout(120)
def test_a_worker_busy_when_redis_dies_waits_for_it(
    env: dict[str, str], simulator, private_redis: PrivateRedis
) -> None:
    """Killed mid-job, Redis takes the worker's next command with it: the worker must wait, not exit
    (under honcho, one process that exits stops them all)."""
    service, server, service_env = make_service(env, REDIS_URL=private_redis.url, ARCHIVE_RETRY_BASE_S="0")
    simulator.state.add_file("slow.mp4", size=3 * 1024 * 1024, faults=["slow"])  # stalls 1 s mid-body
    simulator.state.set_scenario("busy-1", {"video_files": ["slow.mp4"]})
    workers = Workers(service_env)
    worker = workers.start()
    try:
        assert service.submit({**IMAGE, "external_task_id": "busy-1"}).status_code == 200
        store = service.services.store
        wait_for(lambda: store.get("busy-1").archive_state == "archiving", timeout=30, what="the download")
        private_redis.stop()
        time.sleep(OUTAGE_S)  # the outage itself: the download ends, and the job with it, meanwhile
        private_redis.start()
        wait_for(lambda: store.get("busy-1").archive_state == "archived", timeout=60, what="the archive")
        assert worker.poll() is None
    finally:
        workers.stop()
        server.stop()
    (video,) = store.get("busy-1").archived_videos
    assert video["sha256"] == simulator.state.expected_sha256("slow.mp4")
