"""A test event ("Send test event") at a receiver that hangs: the web thread it holds is given back
within the test's own bound (10 s, under a longer NOTIFY_TIMEOUT_S), and a second click meanwhile is
refused (409) rather than holding another thread."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests import test_notify
from tests.support import wait_for
from tests.test_endpoints import KEY_A, SUBMITTED, call, register, start
from tests.test_notify import Answer, Receiver, Stack

receiver, stack = test_notify.receiver, test_notify.stack  # a scripted receiver on loopback; the service

HANGS_S = 60  # far past both bounds: the receiver never answers in time


def test_a_test_event_at_a_hanging_receiver_is_bounded_and_one_at_a_time(
    stack: Stack, receiver: Receiver
) -> None:
    service = start(stack, workers=0, NOTIFY_TIMEOUT_S="30")
    url = receiver.script("/hangs", Answer(200, delay=HANGS_S), Answer(200, body=b"pong"))
    created = register(service, url, event_types=SUBMITTED)
    path = f"/v1/endpoints/{created['id']}/test"

    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(call, service, "POST", path, timeout=HANGS_S)
        wait_for(lambda: receiver.received("/hangs"), what="the test event to reach the receiver")
        second = call(service, "POST", path)
        assert second.status_code == 409, second.text
        refused = second.json()
        assert [e["code"] for e in refused["errors"]] == ["test_in_flight"]
        assert "already in flight" in refused["message"]
        hung = first.result(timeout=HANGS_S)
    assert hung.status_code == 200, hung.text
    attempt = hung.json()["data"]
    assert attempt["error"] == "timeout: no complete answer within 10 s" and attempt["verdict"] == "retry"
    assert len(receiver.received("/hangs")) == 1  # the refused one never left

    # The first one's answer gives the place back: the next test goes out.
    again = call(service, "POST", path)
    assert again.status_code == 200 and again.json()["data"]["response"] == "pong"
    assert call(service, "POST", "/v1/endpoints/ep_none/test", KEY_A).status_code == 404


def test_a_test_event_keeps_a_shorter_notify_timeout(stack: Stack, receiver: Receiver) -> None:
    service = start(stack, workers=0, NOTIFY_TIMEOUT_S="1")
    created = register(service, receiver.script("/slow", Answer(200, delay=HANGS_S)), event_types=SUBMITTED)
    answer = call(service, "POST", f"/v1/endpoints/{created['id']}/test", timeout=httpx.Timeout(30))
    assert answer.json()["data"]["error"] == "timeout: no complete answer within 1 s"
