"""The submission queue shares the account between tenants: weighted round-robin over the tenants with
work waiting, arrival order within each, a tenant's max_open respected without leaving a slot idle, a
tenant that joins after being idle let go first for at most two turnovers of the pack's slots (and
nothing banked beyond that, nor while held back by its max_open), and the account's limit and pause
exactly as before."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import Service, Workers, make_service
from tests.support import wait_for
from tests.test_callbacks import post_callback
from webhook_service.domain.admission import Admission
from webhook_service.domain.gauges import exposition
from webhook_service.domain.task_types import Pack
from webhook_service.domain.tenants import DEFAULT_TENANT, tenant_of, upstream_id
from webhook_service.keys import Keys

KEYS = Keys()


@pytest.fixture
def connection(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def admission(
    connection: redis.Redis,
    max_concurrency: int = 100,
    weights: dict[str, int] | None = None,
    max_open: dict[str, int] | None = None,
) -> Admission:
    if weights:
        connection.hset(KEYS.tenant_weights, mapping=weights)
    if max_open:
        connection.hset(KEYS.tenant_max_open, mapping=max_open)
    return Admission(connection, KEYS, dict.fromkeys(Pack, max_concurrency))


def enqueue(queue: Admission, tenant: str, names: list[str]) -> list[str]:
    """Each task in its own transaction, as `accept` queues them: one arrival time each."""
    ids = [upstream_id(tenant, name) for name in names]
    for external_task_id in ids:
        pipe = queue.redis.pipeline()
        queue.enqueue(pipe, external_task_id, tenant)
        pipe.execute()
    return ids


def take(queue: Admission, count: int) -> list[str | None]:
    return [queue.take_next() for _ in range(count)]


def release(queue: Admission, external_task_id: str) -> None:
    pipe = queue.redis.pipeline()
    queue.release(pipe, external_task_id)
    pipe.execute()


def shares(taken: list[str | None]) -> list[str]:
    return [tenant_of(t) for t in taken if t is not None]


def test_turns_follow_the_weights_and_each_tenant_its_arrival_order(connection: redis.Redis) -> None:
    queue = admission(connection, weights={"heavy": 3})
    # Names in reverse alphabetical order: only the arrival times can put them in order.
    light = enqueue(queue, "light", [f"z{99 - n}" for n in range(40)])
    heavy = enqueue(queue, "heavy", [f"y{99 - n}" for n in range(40)])
    other = enqueue(queue, DEFAULT_TENANT, [f"x{99 - n}" for n in range(40)])
    taken = take(queue, 50)

    # Weights 1 : 3 : 1: every prefix of the turns is within one turn of those shares.
    for n in range(1, len(taken) + 1):
        counts = {t: shares(taken[:n]).count(t) for t in ("light", "heavy", DEFAULT_TENANT)}
        assert abs(counts["heavy"] - n * 3 / 5) <= 1, (n, counts)
        assert abs(counts["light"] - n / 5) <= 1 and abs(counts[DEFAULT_TENANT] - n / 5) <= 1, (n, counts)
    for ids in (light, heavy, other):
        mine = [t for t in taken if t in ids]
        assert mine == ids[: len(mine)]
    assert queue.waiting_by_tenant() == {"light": 30, "heavy": 10, DEFAULT_TENANT: 30}
    assert queue.waiting() == 70 and queue.in_flight() == 50


def test_a_tenant_at_its_max_open_is_passed_over_and_its_slot_goes_to_another(
    connection: redis.Redis,
) -> None:
    queue = admission(connection, max_concurrency=5, weights={"capped": 10}, max_open={"capped": 2})
    capped = enqueue(queue, "capped", [f"c{n}" for n in range(10)])
    enqueue(queue, "other", [f"o{n}" for n in range(10)])
    first = take(queue, 6)
    assert first[5] is None and queue.in_flight() == 5  # the account's limit
    assert sorted(shares(first)) == ["capped", "capped", "other", "other", "other"]

    release(queue, capped[0])
    assert tenant_of(queue.take_next() or "") == "capped"  # under its limit again: its turn (weight 10)
    other_held = next(t for t in first if t is not None and tenant_of(t) == "other")
    release(queue, other_held)
    assert tenant_of(queue.take_next() or "") == "other"  # capped is at 2: the slot is not left idle
    assert queue.take_next() is None


def test_max_open_alone_leaves_slots_for_whoever_comes(connection: redis.Redis) -> None:
    queue = admission(connection, max_concurrency=5, max_open={"capped": 2})
    enqueue(queue, "capped", [f"c{n}" for n in range(5)])
    assert shares(take(queue, 3)) == ["capped", "capped"]
    late = enqueue(queue, "late", ["l0"])
    assert queue.take_next() == late[0]


class Account:
    """Slots that come free one after another, each taken again at once, as tasks finish upstream."""

    def __init__(self, queue: Admission) -> None:
        self.queue = queue
        self.upstream: list[str] = []  # oldest first
        self.kept: set[str] = set()  # tasks that stay upstream until told otherwise
        self.vtime = 0.0

    def fill(self) -> None:
        while (taken := self.queue.take_next()) is not None:
            self.upstream.append(taken)

    def turnovers(self, count: int, after: Callable[[str], None] = lambda taken: None) -> list[str]:
        """`count` slots freed, the oldest task (not kept) first, and who took each; the virtual time
        never moves back, whatever credit a tenant takes its turns on."""
        turns = []
        for _ in range(count):
            release(
                self.queue,
                self.upstream.pop(next(n for n, t in enumerate(self.upstream) if t not in self.kept)),
            )
            taken = self.queue.take_next()
            assert taken is not None
            self.upstream.append(taken)
            turns.append(tenant_of(taken))
            after(taken)
            vtime = float(self.queue.redis.get(KEYS.submit_vtime) or 0)
            assert vtime >= self.vtime
            self.vtime = vtime
        return turns


def busy_account(connection: redis.Redis, slots: int, turnovers: int, **limits: Any) -> Account:
    """`slots` slots kept busy by a tenant with a backlog, alone for `turnovers` slot turnovers."""
    account = Account(admission(connection, max_concurrency=slots, **limits))
    enqueue(account.queue, "busy", [f"b{n:04d}" for n in range(1000)])
    account.fill()
    account.turnovers(turnovers)
    return account


@pytest.mark.parametrize("alone", [30, 0], ids=["after-30-turnovers", "at-the-first"])
@pytest.mark.parametrize(
    ("weight", "then"),
    [(1, ["busy", "idle"]), (2, ["busy", "idle", "idle"])],
)
def test_an_idle_tenants_burst_of_up_to_its_credit_goes_first_then_turns_follow_the_weights(
    connection: redis.Redis, weight: int, then: list[str], alone: int
) -> None:
    # At the first turnover too: the credit would reach below a pass of 0, and every pass moves up.
    account = busy_account(connection, slots=3, turnovers=alone, weights={"idle": weight})
    enqueue(account.queue, "idle", [f"i{n:02d}" for n in range(40)])
    turns = account.turnovers(6 + weight + 3 * len(then))
    # Two turnovers of 3 slots: 6 turns at once, beside the turn (at weight 2, the two) that a tenant
    # joining at the virtual time would have got anyway; then the weights' shares (a tie goes by name).
    assert turns == ["idle"] * (6 + weight) + then * 3


@pytest.mark.parametrize(("idle_turnovers", "burst"), [(3, 4), (6, 7), (60, 7), (600, 7)])
def test_no_more_than_the_credit_is_banked_however_long_a_tenant_idled(
    connection: redis.Redis, idle_turnovers: int, burst: int
) -> None:
    account = Account(admission(connection, max_concurrency=3))
    enqueue(account.queue, "busy", [f"b{n:04d}" for n in range(1000)])
    enqueue(account.queue, "idle", ["i-first"])
    account.fill()  # busy, idle, busy: the idle tenant's one task is taken, its queue is empty
    account.turnovers(idle_turnovers)  # the busy tenant alone
    enqueue(account.queue, "idle", [f"i{n:02d}" for n in range(20)])
    turns = account.turnovers(burst + 1)
    assert turns == ["idle"] * burst + ["busy"]  # one turn per turn it sat out, 6 + 1 at most


def test_leaving_and_rejoining_at_once_gains_nothing(connection: redis.Redis) -> None:
    """A tenant that sends its next task each time its last is taken leaves the round and joins it again
    every time: it gets exactly the turns it would have had sending them all at once."""
    at_once = busy_account(connection, slots=3, turnovers=30)
    enqueue(at_once.queue, "idle", [f"i{n:02d}" for n in range(20)])
    expected = at_once.turnovers(20)
    connection.flushdb()

    one_by_one = busy_account(connection, slots=3, turnovers=30)
    sent = iter(range(1, 20))

    def next_one(taken: str) -> None:
        if tenant_of(taken) == "idle":
            enqueue(one_by_one.queue, "idle", [f"i{next(sent):02d}"])

    enqueue(one_by_one.queue, "idle", ["i00"])
    assert one_by_one.turnovers(20, after=next_one) == expected
    assert expected == ["idle"] * 7 + ["busy", "idle"] * 6 + ["busy"]


def test_a_turn_put_back_during_a_burst_is_given_back_within_the_credit(connection: redis.Redis) -> None:
    account = busy_account(connection, slots=3, turnovers=30)
    ids = enqueue(account.queue, "idle", [f"i{n:02d}" for n in range(20)])
    assert account.turnovers(3) == ["idle"] * 3
    account.queue.put_back(account.upstream.pop())  # Kling said not now
    account.fill()
    assert account.upstream[-1] == ids[2]  # its place in its queue, and its turn, back
    assert account.turnovers(5) == ["idle"] * 4 + ["busy"]  # 7 turns in all, as without it


def test_a_pass_an_earlier_version_left_far_behind_counts_as_a_credit_at_most(
    connection: redis.Redis,
) -> None:
    """Before credits, a pass behind the virtual time counted as it, and one could be left far behind
    (a tenant held back by its max_open kept its old pass): now it counts as one credit behind."""
    account = busy_account(connection, slots=3, turnovers=30)
    enqueue(account.queue, "old", [f"o{n:02d}" for n in range(40)])
    connection.zadd(KEYS.submit_tenants, {"old": 0}, xx=True)  # its pass as that version left it
    assert account.turnovers(9) == ["old"] * 7 + ["busy", "old"]  # not 33 turns in a row


def test_a_tenant_joining_at_its_max_open_banks_nothing_while_held_back(connection: redis.Redis) -> None:
    account = busy_account(connection, slots=4, turnovers=30, max_open={"capped": 1})
    account.kept.update(enqueue(account.queue, "capped", ["c00"]))
    assert account.turnovers(1) == ["capped"]  # its one task, which stays upstream
    enqueue(account.queue, "capped", [f"c{n:02d}" for n in range(1, 20)])  # joining, with a credit...
    assert account.turnovers(20) == ["busy"] * 20  # ...but at its max_open it is passed over
    connection.hset(KEYS.tenant_max_open, "capped", 100)  # the operator lifts the limit
    account.kept.clear()
    assert account.turnovers(10) == ["capped", "busy"] * 5  # an equal share: no burst of 9


def test_a_tenant_held_back_by_its_max_open_banks_no_turns(connection: redis.Redis) -> None:
    queue = admission(connection, max_concurrency=10, max_open={"capped": 1})
    enqueue(queue, "capped", [f"c{n:02d}" for n in range(40)])
    enqueue(queue, "others", [f"o{n:02d}" for n in range(40)])
    held = take(queue, 10)
    assert shares(held).count("capped") == 1  # nine turns passed it by
    connection.hset(KEYS.tenant_max_open, "capped", 100)  # the operator lifts the limit
    for external_task_id in held:
        release(queue, external_task_id or "")
    assert 5 <= shares(take(queue, 10)).count("capped") <= 6  # an equal share from now on


def test_a_tenant_that_empties_its_queue_and_comes_back_at_once_skips_no_turns(
    connection: redis.Redis,
) -> None:
    queue = admission(connection)
    enqueue(queue, "busy", [f"b{n:03d}" for n in range(100)])
    enqueue(queue, "trickle", ["t0"])
    taken: list[str | None] = []
    for n in range(1, 30):
        got = queue.take_next()
        taken.append(got)
        if got is not None and tenant_of(got) == "trickle":
            enqueue(queue, "trickle", [f"t{n}"])  # the next one, the moment the last is taken
    assert shares(taken).count("trickle") <= 15  # half the turns (one more for a tie), not all of them


def test_put_back_restores_the_task_in_its_own_tenants_queue_and_gives_the_turn_back(
    connection: redis.Redis,
) -> None:
    queue = admission(connection)
    mine = enqueue(queue, "team-a", ["a0", "a1", "a2"])
    theirs = enqueue(queue, "team-b", ["b0", "b1", "b2"])
    assert take(queue, 2) == [mine[0], theirs[0]]  # equal passes: the tie goes by name
    arrival = connection.zscore(KEYS.slots, theirs[0])

    queue.put_back(theirs[0])  # refused for now (1303)
    assert connection.zscore(KEYS.tenant_submit_queue("team-b"), theirs[0]) == arrival
    assert connection.zscore(KEYS.submit_queue, theirs[0]) is None
    assert queue.in_flight() == 1 and connection.hget(KEYS.slot_tenants, theirs[0]) is None
    # Its place at its tenant's head, and its tenant's turn back: team-b goes before team-a, where the
    # tie would have put team-a first.
    assert queue.take_next() == theirs[0]
    assert take(queue, 4) == [mine[1], theirs[1], mine[2], theirs[2]]

    # A tenant whose only task was taken, then put back, is waiting again with that task.
    lone = enqueue(queue, "lone", ["l0"])
    assert queue.take_next() == lone[0]
    queue.put_back(lone[0])
    assert queue.waiting_by_tenant() == {"lone": 1}
    assert queue.take_next() == lone[0]


def test_the_default_tenants_queue_from_before_tenants_is_still_drained(connection: redis.Redis) -> None:
    # What the previous version left: tasks in `submit-queue` and nothing else.
    connection.zadd(KEYS.submit_queue, {"old-1": 1, "team-a~old-2": 2})
    queue = admission(connection)
    newer = enqueue(queue, "team-b", ["b0", "b1"])
    assert queue.waiting() == 4
    taken = take(queue, 5)
    assert [t for t in taken if t not in newer] == ["old-1", "team-a~old-2", None]
    assert sorted(t for t in taken if t in newer) == newer
    assert queue.waiting() == 0


def test_the_accounts_limit_and_the_pause_hold_across_tenants(connection: redis.Redis) -> None:
    queue = admission(connection, max_concurrency=3)
    enqueue(queue, "team-a", [f"a{n}" for n in range(5)])
    enqueue(queue, "team-b", [f"b{n}" for n in range(5)])
    held = take(queue, 4)
    assert held[3] is None and queue.in_flight() == 3
    queue.pause()
    release(queue, held[0] or "")
    assert queue.take_next() is None and queue.paused_for_s() > 0  # paused after 1302/1303
    queue.resume()
    assert queue.take_next() is not None and queue.take_next() is None


def test_the_queued_gauge_counts_every_tenants_queue(connection: redis.Redis) -> None:
    queue = admission(connection)
    enqueue(queue, "team-a", ["a0", "a1"])
    enqueue(queue, DEFAULT_TENANT, ["d0"])
    assert "kws_tasks_queued 3.0" in exposition(connection, KEYS).decode().splitlines()


# --- end to end: two teams through the API, one of them with a backlog ---

KEY_A = "team-a-key-0123456789abcdefgh"
KEY_B = "team-b-key-0123456789abcdefgh"
IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a kite over the dunes"}
HELD_OPEN = {"steps": [{"status": "processing", "delay": 0, "send": False}]}


def create(service: Service, key: str, name: str, *, wait: bool) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **({} if wait else {"Prefer": "respond-async"})}
    return service.http.post(
        "/v1/videos/image2video", json={**IMAGE, "external_task_id": name}, headers=headers
    )


def test_one_task_of_a_second_team_goes_before_the_first_teams_backlog(env, simulator) -> None:
    simulator.state.set_default(HELD_OPEN)  # Kling keeps every task open until the test says otherwise
    service, server, service_env = make_service(
        env, KLING_MAX_CONCURRENCY="2", SERVICE_API_KEYS=f"team-a:{KEY_A},team-b:{KEY_B}"
    )
    workers = Workers(service_env)
    try:
        assert [create(service, KEY_A, f"a-{n}", wait=True).status_code for n in range(2)] == [200, 200]
        for n in range(2, 20):  # the account is full: team A's backlog waits
            assert create(service, KEY_A, f"a-{n:02d}", wait=False).status_code == 202
        assert create(service, KEY_B, "b-0", wait=False).status_code == 202
        workers.start()

        def upstream() -> list[str]:
            return [t["external_task_id"] for t in simulator.state.tasks()]

        for n, finished in enumerate(["team-a~a-0", "team-a~a-1"]):
            task_id = service.services.store.get(finished).task_id
            body = {"task_id": task_id, "task_status": "failed", "task_status_msg": "done with it"}
            assert post_callback(service, finished, body).status_code == 200
            wait_for(lambda n=n: len(upstream()) == 3 + n, timeout=30, what="the freed slot to be used")
        assert upstream()[2:] == ["team-b~b-0", "team-a~a-02"]  # one queue: B would wait for 18 of A's
        assert service.services.admission.waiting_by_tenant() == {"team-a": 17}
    finally:
        workers.stop()
        server.stop()
