"""The store's atomic update: the compare-and-set commit, and repeats settled by a script in Redis."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import asdict

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhook_service.domain.errors import TaskNotFound
from webhook_service.domain.store import Repeat, TaskStore
from webhook_service.domain.tasks import Outcome, Status, StatusUpdate, Task, apply_update
from webhook_service.keys import Keys


@pytest.fixture
def store(redis_url: str) -> Iterator[TaskStore]:
    connection = redis.Redis.from_url(redis_url)
    yield TaskStore(connection, Keys())
    connection.flushdb()


def record(store: TaskStore, external_task_id: str, update: StatusUpdate) -> tuple[Task, Outcome, int]:
    """What record_news does, counting how often `change` ran (0: the script settled it in Redis)."""
    runs = 0

    def change(task: Task) -> Outcome:
        nonlocal runs
        runs += 1
        return apply_update(task, update)

    history = {"event": "status", "source": "test", "reported_status": update.status.value}
    task, outcome = store.update(
        external_task_id, change, history=history, repeat=Repeat(update.status, update.task_id)
    )
    return task, outcome, runs


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    stored_status=st.sampled_from(list(Status)),
    stored_id=st.sampled_from([None, "A"]),
    upstream_ids=st.sampled_from([[], ["B"]]),
    news_status=st.sampled_from(list(Status)),
    news_id=st.sampled_from([None, "A", "B", "C"]),
)
def test_a_repeat_settled_in_redis_ends_as_apply_update_says(
    store: TaskStore,
    stored_status: Status,
    stored_id: str | None,
    upstream_ids: list[str],
    news_status: Status,
    news_id: str | None,
) -> None:
    store.redis.flushdb()
    stored = Task("t", status=stored_status, task_id=stored_id, upstream_task_ids=list(upstream_ids))
    store.create(stored, {})
    update = StatusUpdate(status=news_status, task_id=news_id)
    expected = copy.deepcopy(stored)
    expected_outcome = apply_update(expected, update)

    task, outcome, runs = record(store, "t", update)

    assert outcome is expected_outcome
    stored_now = store.get("t")
    assert stored_now is not None
    for found in (task, stored_now):
        assert (found.status, found.task_id, found.upstream_task_ids) == (
            expected.status,
            expected.task_id,
            expected.upstream_task_ids,
        )
    last = store.history("t")[-1]
    assert (last["outcome"], last["status"], last["reported_status"]) == (
        outcome.value,
        expected.status.value,
        news_status.value,
    )
    settled_in_redis = runs == 0
    knows_the_id = news_id in (None, stored_id) or (stored_id is not None and news_id in upstream_ids)
    assert settled_in_redis == (outcome is not Outcome.APPLIED and knows_the_id)


def test_a_change_made_meanwhile_is_never_overwritten(store: TaskStore) -> None:
    """The commit finds the task changed since it was read: it reads again and applies again."""
    store.create(Task("t", status=Status.SUBMITTED, task_id="A"), {})
    other = TaskStore(redis.Redis(connection_pool=store.redis.connection_pool), Keys())
    calls = 0

    def change(task: Task) -> Outcome:
        nonlocal calls
        calls += 1
        if calls == 1:  # another process moves the task on between our read and our commit
            record(other, "t", StatusUpdate(status=Status.PROCESSING, task_id="A"))
        task.status_msg = f"seen {task.status.value}"
        return Outcome.APPLIED

    _, outcome = store.update("t", change, history={"event": "note"})

    assert calls == 2 and outcome is Outcome.APPLIED
    stored = store.get("t")
    assert stored is not None
    assert (stored.status, stored.status_msg) == (Status.PROCESSING, "seen processing")
    assert [entry["event"] for entry in store.history("t")] == ["created", "status", "note"]


def test_work_queued_after_commit_lands_with_the_change_or_not_at_all(store: TaskStore) -> None:
    store.create(Task("t", status=Status.SUBMITTED, task_id="A"), {})

    def follow_up(pipe: redis.client.Pipeline, task: Task) -> None:
        pipe.zadd("follow-ups", {task.external_task_id: 1})

    record_succeed = StatusUpdate(status=Status.SUCCEED, task_id="A", task_result={"videos": []})
    store.update("t", lambda task: apply_update(task, record_succeed), after_commit=follow_up)
    assert store.redis.zrange("follow-ups", 0, -1) == [b"t"]

    script = store.redis.register_script("return 1")

    def runs_a_script(pipe: redis.client.Pipeline, task: Task) -> None:
        script(keys=[], args=[], client=pipe)

    def fail(task: Task) -> Outcome:
        task.status_msg = "never stored"
        return Outcome.APPLIED

    with pytest.raises(ValueError, match="plain writes only"):
        store.update("t", fail, after_commit=runs_a_script)
    stored = store.get("t")
    assert stored is not None and stored.status_msg == ""


def test_a_missing_task_is_not_found_either_way(store: TaskStore) -> None:
    with pytest.raises(TaskNotFound):
        record(store, "absent", StatusUpdate(status=Status.SUCCEED))
    with pytest.raises(TaskNotFound):
        store.update("absent", lambda task: Outcome.APPLIED)
    assert store.redis.keys("*") == []


def test_a_record_keeps_only_what_is_not_an_empty_default_and_reads_back_whole(store: TaskStore) -> None:
    fresh = Task("fresh", status=Status.SUBMITTED, task_id="A")
    done = Task(
        "done",
        status=Status.SUCCEED,
        task_id="B",
        upstream_task_ids=["A"],
        task_result={},
        submit_attempts=2,
        submit_uncertain=True,
        recovered=True,
        archived_videos=[{"video_id": "v", "size": 0}],
    )
    for task in (fresh, done):
        store.create(task, {})
        assert store.get(task.external_task_id) == task

    kept = json.loads(store.redis.get(store.keys.task("fresh")) or b"")
    written = {
        "external_task_id",
        "status",
        "task_id",
        "model_name",
        "created_at",
        "updated_at",
        "tenant",
        "type",
    }
    assert set(kept) == written
    kept = json.loads(store.redis.get(store.keys.task("done")) or b"")
    assert kept["task_result"] == {} and kept["submit_attempts"] == 2 and kept["submit_uncertain"] is True
    assert "error" not in kept and "status_msg" not in kept


def test_a_record_written_whole_as_before_reads_the_same_and_is_settled_in_redis(store: TaskStore) -> None:
    """Records written before empty defaults were left out hold every field, spaces after `:` and `,`."""
    older = Task("older", status=Status.PROCESSING, task_id="A")
    store.create(older, {})
    store.redis.set(store.keys.task("older"), json.dumps(asdict(older)))

    assert store.get("older") == older
    task, outcome, runs = record(store, "older", StatusUpdate(status=Status.PROCESSING, task_id="A"))
    assert (outcome, runs) == (Outcome.DUPLICATE, 0)  # the script in Redis reads it as before
    task, outcome, runs = record(store, "older", StatusUpdate(status=Status.SUCCEED, task_id="A"))
    assert (outcome, runs, task.status) == (Outcome.APPLIED, 1, Status.SUCCEED)
    assert b'"error"' not in (store.redis.get(store.keys.task("older")) or b"")  # written anew, compact
