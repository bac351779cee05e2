"""Usage: who spent the account's units. Tasks go through their lifecycle over real HTTP (created with a
tenant's key, finished by Kling's callbacks carrying final_unit_deduction, refused at create, expired
by the reconciliation's own `expire`), against real Redis; then `GET /v1/usage`, `flask usage`, the
dashboard's Usage page and the metrics must all tell the same story, each tenant only its own."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from tests.conftest import Service, make_service
from tests.test_callbacks import post_callback
from webhook_service.domain.clock import now_ms
from webhook_service.domain.lifecycle import expire
from webhook_service.domain.tasks import Outcome, Task
from webhook_service.domain.tenants import upstream_id
from webhook_service.domain.usage import day_of, thousandths
from webhook_service.web.dashboard import CONTENT_SECURITY_POLICY

KEY_A = "usage-a-key-0123456789abcdefgh"
KEY_B = "usage-b-key-0123456789abcdefgh"
KEY_ADMIN = "usage-admin-key-0123456789abcd"
TENANTS = {"SERVICE_API_KEYS": f"team-a:{KEY_A},team-b:{KEY_B}", "SERVICE_ADMIN_KEYS": f"ops:{KEY_ADMIN}"}
TENANT_OF_KEY = {KEY_A: "team-a", KEY_B: "team-b"}
IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a lighthouse in a storm"}
NO_CALLBACKS = {"steps": [{"status": "processing", "delay": 0, "send": False}]}
REFUSED = {"create_error": {"http": 400, "code": 1201, "message": "the image is not allowed"}}
EMPTY = {"succeed": 0, "failed": 0, "rejected": 0, "expired": 0}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def shared(env: dict[str, str], simulator: Any) -> Iterator[Service]:
    """Two tenants and an admin; Kling sends no callbacks of its own: each test sends the final word."""
    simulator.state.set_default(NO_CALLBACKS)
    service, server, _ = make_service(env, **TENANTS)
    yield service
    service.http.close()
    server.stop()


def create(service: Service, key: str, client_id: str, model: str = "kling-v2-master") -> str:
    """A task of the key's tenant, sent to Kling; its upstream id."""
    answer = service.http.post(
        "/v1/videos/image2video",
        json={**IMAGE, "model_name": model, "external_task_id": client_id},
        headers=bearer(key),
    )
    assert answer.status_code == 200, answer.text
    return upstream_id(TENANT_OF_KEY[key], client_id)


def refused(service: Service, simulator: Any, key: str, client_id: str, model: str = "kling-v1") -> str:
    """A task Kling refuses at create: `rejected`."""
    external_id = upstream_id(TENANT_OF_KEY[key], client_id)
    simulator.state.set_scenario(external_id, REFUSED)
    answer = service.http.post(
        "/v1/videos/image2video",
        json={**IMAGE, "model_name": model, "external_task_id": client_id},
        headers=bearer(key),
    )
    assert answer.status_code == 400, answer.text
    assert stored(service, external_id).status == "rejected"
    return external_id


def final_word(service: Service, external_id: str, status: str, units: str) -> str:
    """Kling's final callback, as Kling sends it (legacy shape); the outcome."""
    task_id = stored(service, external_id).task_id
    body: dict[str, Any] = {"task_id": task_id, "task_status": status, "final_unit_deduction": units}
    if status == "succeed":
        body["task_result"] = {"videos": [{"id": "v1", "url": "https://example.com/v.mp4", "duration": "5"}]}
    answer = post_callback(service, external_id, body)
    assert answer.status_code == 200, answer.text
    outcome: str = answer.json()["data"]["outcome"]
    return outcome


def stored(service: Service, external_id: str) -> Task:
    task = service.services.store.get(external_id)
    assert task is not None
    return task


def usage(service: Service, key: str, **params: str) -> httpx.Response:
    return service.http.get("/v1/usage", params=params, headers=bearer(key))


def tenants(answer: httpx.Response) -> dict[str, dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    return {tenant["tenant"]: tenant for tenant in answer.json()["data"]["tenants"]}


def by_model(day: dict[str, Any]) -> dict[str, tuple[dict[str, int], float]]:
    return {model["model"]: (model["tasks"], model["units"]) for model in day["models"]}


def created_days_ago(service: Service, external_id: str, days: int) -> date:
    """Move the task's creation back: a task recorded days ago (queued, or slow upstream) that ends now."""

    def back(task: Task) -> Outcome:
        task.created_at -= days * 86_400_000
        return Outcome.DUPLICATE

    task, _ = service.services.store.update(external_id, back)
    return day_of(task.created_at)


def test_final_tasks_are_counted_by_day_of_creation_model_and_status_with_their_units(
    shared: Service, simulator: Any
) -> None:
    fox = create(shared, KEY_A, "fox")
    owl = create(shared, KEY_A, "owl")
    cat = create(shared, KEY_A, "cat", model="kling-v1-6")
    old = create(shared, KEY_A, "old")
    bad = refused(shared, simulator, KEY_A, "bad")
    open_task = create(shared, KEY_A, "still-open")
    today = day_of(stored(shared, fox).created_at)
    earlier = created_days_ago(shared, old, 3)

    assert final_word(shared, fox, "succeed", "1.5") == "applied"
    assert final_word(shared, owl, "succeed", "2") == "applied"
    assert final_word(shared, cat, "failed", "0") == "applied"
    assert final_word(shared, old, "succeed", "0.1") == "applied"
    # Kling's retries of a final callback, and a late contradicting one, change nothing.
    assert final_word(shared, fox, "succeed", "1.5") == "duplicate"
    assert final_word(shared, owl, "failed", "7") == "duplicate"

    (a,) = tenants(usage(shared, KEY_A)).values()
    assert a["tenant"] == "team-a"
    assert a["tasks"] == {"succeed": 3, "failed": 1, "rejected": 1, "expired": 0}
    assert a["units"] == 3.6  # 1.5 + 2 + 0.1, exactly: summed as thousandths
    assert [day["day"] for day in a["days"]] == [earlier.isoformat(), today.isoformat()]
    first, second = a["days"]
    assert by_model(first) == {"kling-v2-master": ({**EMPTY, "succeed": 1}, 0.1)}
    assert by_model(second) == {
        "kling-v1": ({**EMPTY, "rejected": 1}, 0.0),
        "kling-v1-6": ({**EMPTY, "failed": 1}, 0.0),
        "kling-v2-master": ({**EMPTY, "succeed": 2}, 3.5),
    }
    assert second["tasks"] == {"succeed": 2, "failed": 1, "rejected": 1, "expired": 0}
    assert second["units"] == 3.5
    assert stored(shared, open_task).status == "submitted" and stored(shared, bad).status == "rejected"

    # Only days within the period count: from the later day on, the earlier task is out.
    later = tenants(usage(shared, KEY_A, **{"from": today.isoformat(), "to": today.isoformat()}))
    assert later["team-a"]["units"] == 3.5 and len(later["team-a"]["days"]) == 1


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_an_expired_task_that_succeeds_later_counts_once_as_succeed(shared: Service) -> None:
    late = create(shared, KEY_A, "late")
    finished = counter("kws_tasks_finished_total", tenant="team-a", status="expired")
    succeeded = counter("kws_tasks_finished_total", tenant="team-a", status="succeed")
    spent = counter("kws_task_units_total", tenant="team-a")

    _, outcome = expire(shared.services, late)
    assert outcome is Outcome.APPLIED
    _, again = expire(shared.services, late)  # the next pass finds it final: nothing more
    assert again is Outcome.STALE
    (a,) = tenants(usage(shared, KEY_A)).values()
    assert a["tasks"] == {**EMPTY, "expired": 1} and a["units"] == 0

    assert final_word(shared, late, "succeed", "2.5") == "applied"
    assert final_word(shared, late, "succeed", "2.5") == "duplicate"
    (a,) = tenants(usage(shared, KEY_A)).values()
    assert a["tasks"] == {**EMPTY, "succeed": 1}
    assert by_model(a["days"][0]) == {"kling-v2-master": ({**EMPTY, "succeed": 1}, 2.5)}

    # The counters count transitions: into expired once, into succeed once, its units once.
    assert counter("kws_tasks_finished_total", tenant="team-a", status="expired") == finished + 1
    assert counter("kws_tasks_finished_total", tenant="team-a", status="succeed") == succeeded + 1
    assert counter("kws_task_units_total", tenant="team-a") == spent + 2.5


def test_a_task_that_expired_before_usage_was_counted_never_shows_a_negative_count(shared: Service) -> None:
    """An upgrade: the task expired under a version that counted no usage, and Kling's final word comes
    after it. Its `expired` is taken back from a count that never had it."""
    old = create(shared, KEY_A, "expired-before-the-upgrade")
    expire(shared.services, old)
    keys = shared.services.keys
    shared.services.redis.delete(keys.usage("team-a", day_of(stored(shared, old).created_at).isoformat()))

    assert final_word(shared, old, "succeed", "1") == "applied"
    (a,) = tenants(usage(shared, KEY_A)).values()
    assert a["tasks"] == {**EMPTY, "succeed": 1} and a["units"] == 1
    assert by_model(a["days"][0]) == {"kling-v2-master": ({**EMPTY, "succeed": 1}, 1.0)}


def test_a_tenant_sees_only_its_own_usage_and_an_admin_sees_every_tenant(shared: Service) -> None:
    a_task, b_task = create(shared, KEY_A, "job-1"), create(shared, KEY_B, "job-1")
    assert final_word(shared, a_task, "succeed", "4.2") == "applied"
    assert final_word(shared, b_task, "failed", "0.7") == "applied"

    a = tenants(usage(shared, KEY_A))
    b = tenants(usage(shared, KEY_B))
    assert list(a) == ["team-a"] and a["team-a"]["units"] == 4.2
    assert list(b) == ["team-b"] and b["team-b"]["tasks"] == {**EMPTY, "failed": 1}
    assert "4.2" not in usage(shared, KEY_B).text and "team-a" not in usage(shared, KEY_B).text
    own = tenants(usage(shared, KEY_B, tenant="team-b"))
    assert own == b
    other = usage(shared, KEY_B, tenant="team-a")
    assert other.status_code == 400 and other.json()["errors"][0]["field"] == "tenant"
    assert "4.2" not in other.text

    everyone = tenants(usage(shared, KEY_ADMIN))
    assert list(everyone) == ["team-a", "team-b"]
    assert everyone["team-a"]["units"] == 4.2 and everyone["team-b"]["units"] == 0.7
    picked = tenants(usage(shared, KEY_ADMIN, tenant="team-b"))
    assert list(picked) == ["team-b"]
    assert usage(shared, "not-a-key-0123456789abcdefgh").status_code == 401


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2025-13-01"}, "from"),
        ({"from": "2025-02-30"}, "from"),
        ({"to": "2025/01/01"}, "to"),
        ({"to": "20250101"}, "to"),
        ({"to": "\uff12\uff10\uff12\uff15-01-01"}, "to"),  # fullwidth digits: isdigit() says yes
        ({"from": "2025-03-02", "to": "2025-03-01"}, "from"),
        ({"from": "2024-01-01", "to": "2025-01-01"}, "from"),  # 367 days
        ({"tenant": "Team A"}, "tenant"),
    ],
)
def test_bad_periods_and_tenants_are_400_naming_the_field(
    shared: Service, params: dict[str, str], field: str
) -> None:
    answer = usage(shared, KEY_ADMIN, **params)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["code"] == 1201 and body["message"].startswith(f"invalid query: {field}: ")
    assert [error["field"] for error in body["errors"]] == [field]


def test_the_period_defaults_to_the_last_30_days_and_may_span_366(shared: Service) -> None:
    answer = usage(shared, KEY_A).json()["data"]
    last = date.fromisoformat(answer["to"])
    assert abs(last - day_of(now_ms())) <= timedelta(days=1)  # today, UTC, whenever the test runs
    assert date.fromisoformat(answer["from"]) == last - timedelta(days=29)
    leap = usage(shared, KEY_A, **{"from": "2024-01-01", "to": "2024-12-31"}).json()["data"]
    assert (leap["from"], leap["to"]) == ("2024-01-01", "2024-12-31")
    ending = usage(shared, KEY_A, to="2024-03-01").json()["data"]
    assert (ending["from"], ending["to"]) == ("2024-02-01", "2024-03-01")
    earliest = usage(shared, KEY_A, to="0001-01-05").json()["data"]  # no day before the first
    assert (earliest["from"], earliest["to"]) == ("0001-01-01", "0001-01-05")


def test_units_are_read_as_kling_writes_them_and_nonsense_counts_nothing() -> None:
    assert [thousandths(u) for u in ("1.5", "2", " 0.125 ", "0", None, "")] == [1500, 2000, 125, 0, 0, 0]
    assert [thousandths(u) for u in ("-1", "NaN", "inf", "abc", "1e9", "0x10")] == [0] * 6


def test_the_cli_prints_every_tenants_usage_as_a_table(shared: Service) -> None:
    a_task, b_task = create(shared, KEY_A, "cli-a"), create(shared, KEY_B, "cli-b", model="kling-v1-6")
    final_word(shared, a_task, "succeed", "1.25")
    final_word(shared, b_task, "succeed", "3")
    day = day_of(stored(shared, a_task).created_at).isoformat()
    runner = shared.app.test_cli_runner()

    result = runner.invoke(args=["usage"])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines()]
    assert lines[1] == ["tenant", "day", "model", "succeed", "failed", "rejected", "expired", "units"]
    assert ["team-a", day, "kling-v2-master", "1", "0", "0", "0", "1.25"] in lines
    assert ["team-b", day, "kling-v1-6", "1", "0", "0", "0", "3"] in lines
    assert ["team-a", "total", "1", "0", "0", "0", "1.25"] in lines

    one = runner.invoke(args=["usage", "--tenant", "team-b", "--from", day, "--to", day])
    assert one.exit_code == 0 and "team-a" not in one.output and "kling-v1-6" in one.output
    as_json = runner.invoke(args=["usage", "--json", "--tenant", "team-a"])
    assert '"units": 1.25' in as_json.output
    bad = runner.invoke(args=["usage", "--from", "yesterday"])
    assert bad.exit_code == 2 and "--from" in bad.output


# --- the dashboard (the browser's view is in test_usage_browser.py) ---


def sign_in(service: Service, key: str) -> FlaskClient:
    client = service.app.test_client()
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    signed = client.post("/login", data={"credential": key, "csrf_token": token[1]})
    assert signed.status_code == 302, signed.text
    return client


def test_the_usage_page_draws_each_tenant_its_own_chart(shared: Service) -> None:
    a_task, b_task = create(shared, KEY_A, "page-a"), create(shared, KEY_B, "page-b", model="kling-v1-5")
    final_word(shared, a_task, "succeed", "6.5")
    final_word(shared, b_task, "succeed", "0.9")
    day = day_of(stored(shared, a_task).created_at).isoformat()

    page = sign_in(shared, KEY_A).get("/usage")
    assert page.status_code == 200
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    html = page.text
    assert 'aria-current="page">Usage</a>' in html
    assert f'<g class="bar" data-day="{day}" data-units="6.5">' in html
    assert f"<title>{day} · kling-v2-master: 6.5 units, 1 task (1 succeed)</title>" in html
    assert "team-b" not in html and "0.9" not in html and "kling-v1-5" not in html
    assert "<script>" not in html and "style=" not in html  # the CSP would refuse them

    admin = sign_in(shared, KEY_ADMIN)
    everyone = admin.get("/usage").text
    assert 'id="usage-team-a"' in everyone and 'id="usage-team-b"' in everyone
    only_b = admin.get("/usage?tenant=team-b").text
    assert 'id="usage-team-b"' in only_b and 'id="usage-team-a"' not in only_b
    wrong = sign_in(shared, KEY_B).get("/usage?from=2025-02-30").text
    assert "from: &#39;2025-02-30&#39; is not a day" in wrong and 'id="usage-team-b"' in wrong
