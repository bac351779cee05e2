"""`/metrics` with tenants: the counters carry the task's tenant, and a tenant's scrape shows only the
series labelled with its own tenant. The account-wide series (submissions, downloads, Kling's latency,
refused callbacks, and the gauges: queued and open tasks, dead letters, RQ jobs) add up every tenant's
work, so only an admin, an open API's caller and a METRICS_PUBLIC scrape see them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import test_metrics, test_usage
from tests.conftest import Service, Workers, make_service
from tests.support import wait_for
from tests.test_notify import Receiver
from tests.test_usage import IMAGE, KEY_A, KEY_ADMIN, KEY_B, TENANTS, bearer, counter, create, final_word
from webhook_service.domain.gauges import exposition
from webhook_service.integrations import metrics
from webhook_service.web.app import create_app

shared = test_usage.shared  # the usage tests' fixture: tenants A and B and an admin, no callbacks of Kling's
Series = tuple[str, tuple[tuple[str, str], ...]]
# What only the operator sees: account-wide, whoever's work moved it.
ACCOUNT_WIDE = {
    "kws_submissions_total",
    "kws_download_bytes_total",
    "kws_dead_letters",
    "kws_tasks_queued",
    "kws_tasks_open",
    "kws_redis_up",
}


def scrape(text: str) -> dict[Series, float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def tenants_in(found: dict[Series, float]) -> set[str | None]:
    return {dict(labels).get("tenant") for _, labels in found}


def test_a_tenant_scrapes_only_the_series_of_its_own_tenant(shared: Service, env: dict[str, str]) -> None:
    a_task, b_task = create(shared, KEY_A, "m-a"), create(shared, KEY_B, "m-b")
    applied_a = counter("kws_callbacks_total", shape="legacy", outcome="applied", tenant="team-a")
    forged = counter("kws_callbacks_total", shape="unknown", outcome="bad_token", tenant="")
    final_word(shared, a_task, "succeed", "1")
    final_word(shared, b_task, "succeed", "2")
    refusal = httpx.post(f"{shared.url}/callbacks/kling?token=forged", json={"task_status": "succeed"})
    assert refusal.status_code == 403
    shared.services.redis.zadd(shared.services.keys.dead_letters, {"dlv_b-1": 1, "dlv_b-2": 2})  # B's, say

    assert counter("kws_callbacks_total", shape="legacy", outcome="applied", tenant="team-a") == applied_a + 1
    assert counter("kws_callbacks_total", shape="unknown", outcome="bad_token", tenant="") == forged + 1

    text_a = shared.http.get("/metrics", headers=bearer(KEY_A)).text
    seen_by_a = scrape(text_a)
    assert tenants_in(seen_by_a) == {"team-a"}  # not one series without a tenant, none of B's
    assert ("kws_tasks_finished_total", (("status", "succeed"), ("tenant", "team-a"))) in seen_by_a
    assert ("kws_task_units_total", (("tenant", "team-a"),)) in seen_by_a
    for name in ACCOUNT_WIDE:  # not even listed
        assert name not in text_a
    seen_by_b = scrape(shared.http.get("/metrics", headers=bearer(KEY_B)).text)
    assert tenants_in(seen_by_b) == {"team-b"}
    assert ("kws_task_units_total", (("tenant", "team-b"),)) in seen_by_b

    # The operator sees everything: an admin's key, a METRICS_PUBLIC scrape, an open API's caller.
    public = create_app({**env, **TENANTS, "METRICS_PUBLIC": "true"}).test_client()
    open_api = create_app(env).test_client()
    refused_key = ("kws_callbacks_total", (("outcome", "bad_token"), ("shape", "unknown"), ("tenant", "")))
    for everything in (
        scrape(shared.http.get("/metrics", headers=bearer(KEY_ADMIN)).text),
        scrape(public.get("/metrics").get_data(as_text=True)),
        scrape(open_api.get("/metrics").get_data(as_text=True)),
    ):
        assert {"team-a", "team-b", ""} <= tenants_in(everything)
        assert {name for name, _ in everything} >= ACCOUNT_WIDE
        assert everything[("kws_dead_letters", ())] == 2
        refused_key = (
            "kws_callbacks_total",
            (("outcome", "bad_token"), ("shape", "unknown"), ("tenant", "")),
        )
        assert everything[refused_key] >= 1


def test_the_tenant_label_is_a_tenant_name_and_takes_at_most_so_many_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics, "_tenant_labels", set())
    monkeypatch.setattr(metrics, "TENANT_LABELS_MAX", 3)
    names = ["team-a", "team-b", "team-c", "team-d", "team-a"]
    assert [metrics.tenant_label(name) for name in names] == [
        "team-a",
        "team-b",
        "team-c",
        "_other",
        "team-a",
    ]
    assert metrics.tenant_label("") == ""
    assert metrics.tenant_label('a"} 1\nkws_fake 9') == "_other"  # never a name the operator could give


multiprocess_dir = test_metrics.multiprocess_dir  # the metrics tests' fixture


def test_delivery_attempts_are_counted_by_the_tasks_tenant_in_the_workers(
    env: dict[str, str], simulator: Any, multiprocess_dir: Path
) -> None:
    receiver = Receiver()
    hook = receiver.script("/hook")
    simulator.state.set_scenario("team-a~hooked", {"steps": [{"status": "succeed", "delay": 0.2}]})
    service, server, service_env = make_service(env, **TENANTS, NOTIFY_ALLOWED_HOSTS="127.0.0.1")
    workers = Workers({**service_env, "PROMETHEUS_MULTIPROC_DIR": str(multiprocess_dir)})
    workers.start()
    try:
        answer = service.http.post(
            "/v1/videos/image2video",
            json={**IMAGE, "external_task_id": "hooked", "callback_url": hook},
            headers=bearer(KEY_A),
        )
        assert answer.status_code == 200, answer.text
        wait_for(lambda: receiver.received("/hook"), timeout=30, what="the task's webhook")
        key = (
            "kws_delivery_attempts_total",
            (("outcome", "delivered"), ("sink", "webhook"), ("tenant", "team-a")),
        )

        def counted() -> dict[Any, float]:
            found = scrape(exposition(service.services.redis, service.services.keys, "team-a").decode())
            return found if found.get(key) else {}

        seen_by_a = wait_for(counted, timeout=30, what="the attempt in the workers' metric files")
        assert seen_by_a[key] >= 1 and tenants_in(seen_by_a) == {"team-a"}
        seen_by_b = scrape(exposition(service.services.redis, service.services.keys, "team-b").decode())
        assert key not in seen_by_b and tenants_in(seen_by_b) <= {"team-b"}
        everything = scrape(exposition(service.services.redis, service.services.keys).decode())
        assert everything[key] >= 1 and ("kws_redis_up", ()) in everything
    finally:
        workers.stop()
        server.stop()
        receiver.stop()
