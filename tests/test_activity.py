"""Activity: the Tasks page's last 24 hours. Tasks finish through their lifecycle (created over HTTP with
a tenant's key, finished by Kling's callbacks, refused at create, expired by the reconciliation's own
`expire`), delivery attempts are recorded by the notification store's own `record_attempt`, all against
real Redis; then the hourly counts, and the dashboard's charts of them, must say what happened, each
tenant only its own, an admin the sum. The browser's view is in test_activity_browser.py."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import pytest

from tests import test_usage
from tests.conftest import Service
from tests.test_usage import EMPTY, KEY_A, KEY_ADMIN, KEY_B, create, final_word, refused, sign_in
from webhook_service.domain import activity, lifecycle
from webhook_service.domain.activity import HOUR_MS, TTL_S, Hour, hour_of, last_hours
from webhook_service.domain.clock import now_ms
from webhook_service.domain.lifecycle import expire
from webhook_service.domain.tasks import Outcome
from webhook_service.domain.tenants import Scope
from webhook_service.notify.records import Delivery, DeliveryStatus
from webhook_service.notify.routing import SinkKind
from webhook_service.notify.sinks import Attempt
from webhook_service.web.dashboard.activity_chart import activity_panel

shared = test_usage.shared  # two tenants and an admin; Kling sends no callbacks of its own

TEAM_A, TEAM_B, ADMIN = Scope("team-a"), Scope("team-b"), Scope("ops", admin=True)


def hours_of(service: Service, scope: Scope) -> list[Hour]:
    return last_hours(service.services.redis, service.services.keys, scope)


def finished(hours: list[Hour]) -> dict[str, int]:
    """Tasks by final status over the hours."""
    return {status: sum(hour.tasks[status] for hour in hours) for status in EMPTY}


def delivery(service: Service, tenant: str, name: str) -> Delivery:
    """A new delivery of one of the tenant's tasks, made with the notification store's own operations."""
    made = Delivery(
        id=f"dlv_{tenant}_{name}",
        event_id=f"evt_{tenant}_{name}",
        event_type="task.succeeded",
        external_task_id=f"{tenant}~{name}",
        sink=SinkKind.WEBHOOK,
        target="http://127.0.0.1:9/hook",
        tenant=tenant,
    )
    assert service.services.deliveries.create(made)
    return made


def attempt(service: Service, made: Delivery, status: DeliveryStatus) -> Delivery:
    """One attempt at `made`, by the job that owns it, ending in `status`; the delivery after it."""
    store = service.services.deliveries
    current = store.get(made.id)
    assert current is not None
    answer = Attempt(status_code=200 if status is DeliveryStatus.DELIVERED else 500)
    retry_at = time.time() + 60 if status is DeliveryStatus.PENDING else None
    reason = "exhausted" if status is DeliveryStatus.FAILED else None
    after = store.record_attempt(made.id, current.job, answer, status, reason, retry_at)
    assert after is not None and after.status is status
    return after


def test_final_tasks_count_once_in_the_hour_they_finished_by_status(shared: Service, simulator: Any) -> None:
    started = now_ms()
    fox, owl, cat = create(shared, KEY_A, "fox"), create(shared, KEY_A, "owl"), create(shared, KEY_A, "cat")
    refused(shared, simulator, KEY_A, "bad")
    create(shared, KEY_A, "still-open")
    assert final_word(shared, fox, "succeed", "1") == "applied"
    assert final_word(shared, owl, "failed", "0") == "applied"
    assert expire(shared.services, cat)[1] is Outcome.APPLIED
    # Kling's retries of a final callback, and the next reconciliation pass, change nothing.
    assert final_word(shared, fox, "succeed", "1") == "duplicate"
    assert expire(shared.services, cat)[1] is Outcome.STALE
    ended = now_ms()

    hours = hours_of(shared, TEAM_A)
    assert len(hours) == 24 and hours[-1].start == hour_of(ended)
    assert hours[0].start == hour_of(ended) - timedelta(hours=23)
    assert finished(hours) == {"succeed": 1, "failed": 1, "rejected": 1, "expired": 1}
    assert {hour.start for hour in hours if hour.finished} <= {hour_of(started), hour_of(ended)}

    # Small and bounded: one hash per tenant per hour, of a few fields, each gone in two days.
    redis, keys = shared.services.redis, shared.services.keys
    stored = list(redis.scan_iter(keys.activity("team-a", "*")))
    assert 1 <= len(stored) <= 2
    for key in stored:
        assert 0 < redis.ttl(key) <= TTL_S and redis.hlen(key) <= 6
    assert 0 < redis.ttl(keys.activity_tenants) <= TTL_S


def test_an_expired_task_that_succeeds_later_moves_from_the_hour_it_expired(
    shared: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    late = create(shared, KEY_A, "late")
    earlier = now_ms() - 3 * HOUR_MS
    with monkeypatch.context() as then:  # the reconciliation gave up on it three hours ago
        then.setattr(activity, "now_ms", lambda: earlier)
        then.setattr(lifecycle, "now_ms", lambda: earlier)
        assert expire(shared.services, late)[1] is Outcome.APPLIED
    counted = {hour.start: hour.tasks for hour in hours_of(shared, TEAM_A) if hour.finished}
    assert counted == {hour_of(earlier): {**EMPTY, "expired": 1}}

    assert final_word(shared, late, "succeed", "2.5") == "applied"
    assert final_word(shared, late, "succeed", "2.5") == "duplicate"
    hours = hours_of(shared, TEAM_A)
    counted = {hour.start: hour.tasks for hour in hours if hour.finished}
    assert list(counted.values()) == [{**EMPTY, "succeed": 1}]
    assert hour_of(earlier) not in counted and finished(hours) == {**EMPTY, "succeed": 1}


def test_a_task_expired_longer_ago_than_the_counts_are_kept_takes_nothing_back(
    shared: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    late = create(shared, KEY_A, "very-late")
    long_ago = now_ms() - TTL_S * 1000 - HOUR_MS
    with monkeypatch.context() as then:
        then.setattr(activity, "now_ms", lambda: long_ago)
        then.setattr(lifecycle, "now_ms", lambda: long_ago)
        expire(shared.services, late)
    redis, keys = shared.services.redis, shared.services.keys
    gone = keys.activity("team-a", hour_of(long_ago).strftime("%Y-%m-%dT%H"))
    redis.delete(gone)  # as its TTL would have, had it been written then

    assert final_word(shared, late, "succeed", "1") == "applied"
    assert not redis.exists(gone)  # no hash of -1 made for an hour long gone
    assert finished(hours_of(shared, TEAM_A)) == {**EMPTY, "succeed": 1}


def test_delivery_attempts_count_in_their_hour_delivered_or_not(shared: Service) -> None:
    retried = delivery(shared, "team-a", "retried")
    attempt(shared, retried, DeliveryStatus.PENDING)
    store = shared.services.deliveries
    stale = store.record_attempt(retried.id, "a-job-that-lost-it", Attempt(), DeliveryStatus.DELIVERED)
    assert stale is None  # an attempt no job owns is neither kept nor counted
    attempt(shared, retried, DeliveryStatus.DELIVERED)
    attempt(shared, delivery(shared, "team-a", "dead"), DeliveryStatus.FAILED)

    hours = hours_of(shared, TEAM_A)
    assert sum(hour.delivered for hour in hours) == 1
    assert sum(hour.failed for hour in hours) == 2
    assert sum(hour.attempts for hour in hours_of(shared, TEAM_B)) == 0


def charted(html: str, total: str) -> int:
    """The sum of the totals the page's bars carry as data-<total>."""
    return sum(int(n) for n in re.findall(rf'<g class="bar" data-hour="[^"]+" data-{total}="(\d+)"', html))


def segments(html: str) -> set[str]:
    return set(re.findall(r'<rect class="segment ([a-z-]+)"', html))


def test_a_tenant_charts_its_own_activity_and_an_admin_the_sum(shared: Service) -> None:
    a_task, b_task, b_other = (
        create(shared, KEY_A, "a1"),
        create(shared, KEY_B, "b1"),
        create(shared, KEY_B, "b2"),
    )
    final_word(shared, a_task, "succeed", "1")
    final_word(shared, b_task, "failed", "0")
    final_word(shared, b_other, "succeed", "1")
    attempt(shared, delivery(shared, "team-a", "a1"), DeliveryStatus.DELIVERED)
    attempt(shared, delivery(shared, "team-b", "b1"), DeliveryStatus.FAILED)

    assert finished(hours_of(shared, TEAM_A)) == {**EMPTY, "succeed": 1}
    assert finished(hours_of(shared, TEAM_B)) == {**EMPTY, "succeed": 1, "failed": 1}
    assert finished(hours_of(shared, ADMIN)) == {**EMPTY, "succeed": 2, "failed": 1}

    page_a = sign_in(shared, KEY_A).get("/").text
    assert charted(page_a, "tasks") == 1 and charted(page_a, "attempts") == 1
    assert segments(page_a) == {"status-fill-succeed", "delivery-fill-delivered"}
    assert "100%</strong> of 1 attempt delivered" in page_a
    assert "tenant team-a" in page_a and "team-b" not in page_a

    page_b = sign_in(shared, KEY_B).get("/").text
    assert charted(page_b, "tasks") == 2 and charted(page_b, "attempts") == 1
    assert segments(page_b) == {"status-fill-succeed", "status-fill-failed", "delivery-fill-failed"}

    everyone = sign_in(shared, KEY_ADMIN).get("/").text
    assert charted(everyone, "tasks") == 3 and charted(everyone, "attempts") == 2
    assert "50%</strong> of 2 attempts delivered" in everyone and "(every tenant)" in everyone


def test_the_chart_draws_a_bar_only_for_hours_with_counts_on_whole_number_steps() -> None:
    now = hour_of(now_ms())
    hours = [Hour(now - timedelta(hours=n)) for n in reversed(range(24))]
    hours[-1].tasks.update(succeed=2, failed=1)
    hours[-3].delivered, hours[-3].failed = 3, 1

    panel = activity_panel(hours)
    (bar,) = panel.tasks.bars
    assert bar.key == now.strftime("%Y-%m-%dT%H:00Z") and bar.total == "3"
    assert bar.title == f"{now:%H:%M} to {now + timedelta(hours=1):%H:%M} UTC: 3 tasks (2 succeed, 1 failed)"
    succeed, failed = bar.segments
    assert succeed.css == "status-fill-succeed" and succeed.height == pytest.approx(
        2 * failed.height, abs=0.02
    )
    assert [tick.text for tick in panel.tasks.y_ticks] == ["0", "1", "2", "3"]
    labels = panel.tasks.x_labels
    assert len(labels) == 8 and labels[-1].text == f"{now:%H:%M}"  # every third hour, the current one too
    (sent,) = panel.deliveries.bars
    assert sent.title.endswith("UTC: 4 attempts, 75% delivered")
    assert (panel.finished, panel.attempts, panel.success) == (3, 4, "75%")
    assert [(entry.name, entry.detail) for entry in panel.deliveries.legend] == [
        ("delivered", "3"),
        ("failed", "1"),
    ]
    assert activity_panel([Hour(now)]).success == ""  # no attempts: no share
