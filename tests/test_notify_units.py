"""Notification pieces on their own: retry timing, parsing, sink choice, settings, rendering limits, and
the jobs' idempotence (run in-process with RQ's SimpleWorker against a real Redis and a loopback receiver)."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from rq import Queue, SimpleWorker
from rq.registry import ScheduledJobRegistry
from slack_sdk.models.blocks import Block

import workers.notify
from tests.test_notify import SECRET, Receiver
from tests.test_notify_people import parts
from webhook_service.config import DEFAULT_NOTIFY_EVENTS, ConfigError, Settings
from webhook_service.domain.clock import now_ms, parse_since
from webhook_service.domain.events import Event, EventType, event_id
from webhook_service.domain.tasks import Outcome, Task
from webhook_service.jobs import NOTIFY_QUEUE
from webhook_service.notify.render import email_message, slack_message
from webhook_service.notify.retry import RETRY_AFTER_MAX_S, next_delay, parse_retry_after
from webhook_service.notify.routing import Sink, SinkKind, sinks_for
from webhook_service.redaction import shown_url
from webhook_service.services import Services
from workers.horse import running_jobs_with

BASE = {"SECRET_KEY": "s" * 32}


def test_delays_follow_the_schedule_within_jitter_then_stop() -> None:
    schedule = (5.0, 300.0, 1800.0)
    for tries, nominal in enumerate(schedule, start=1):
        delays = [next_delay(schedule, tries) for _ in range(200)]
        assert all(0.8 * nominal <= d <= 1.2 * nominal for d in delays)  # type: ignore[operator]
        assert len(set(delays)) > 1
    assert next_delay(schedule, 4) is None


def test_retry_after_is_honoured_within_bounds() -> None:
    assert 120 <= next_delay((5.0,), 1, retry_after_s=120) <= 120  # type: ignore[operator]
    assert next_delay((5.0,), 1, retry_after_s=86400) == RETRY_AFTER_MAX_S  # at most an hour
    assert 4 <= next_delay((5.0,), 1, retry_after_s=0) <= 6  # type: ignore[operator] # never sooner
    assert next_delay((5.0,), 2, retry_after_s=60) is None  # and never beyond the schedule


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert parse_retry_after("30") == 30
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert parse_retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), now) == 0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_since_takes_durations_and_iso_times() -> None:
    assert abs(parse_since("2h") - (now_ms() - 7_200_000)) < 1000
    assert abs(parse_since("1.5d") - (now_ms() - 129_600_000)) < 1000
    expected = round(datetime(2026, 11, 21, 10, 0, tzinfo=UTC).timestamp() * 1000)
    assert parse_since("2026-11-21T10:00:00Z") == parse_since("2026-11-21T10:00:00") == expected
    assert parse_since("2026-11-21T11:00:00+01:00") == expected
    with pytest.raises(ValueError, match="duration"):
        parse_since("yesterday")


def test_urls_are_shown_without_their_secrets() -> None:
    assert shown_url("https://hooks.slack.com/services/T0/B0/secret") == "https://hooks.slack.com/…"
    assert shown_url("https://user:pw@example.com:8443/?token=x") == "https://example.com:8443/…"
    assert shown_url("http://[::1]:9000/") == "http://[::1]:9000/"
    assert shown_url("ops@example.com,dev@example.com") == "ops@example.com,dev@example.com"


def settings(**overrides: str) -> Settings:
    return Settings.from_env({**BASE, **overrides})


def test_each_sink_has_its_own_filter_defaulting_to_notify_events() -> None:
    configured = settings(
        NOTIFY_WEBHOOK_URLS="https://a.example/hook,https://a.example/hook",
        NOTIFY_WEBHOOK_SECRET=SECRET,
        SLACK_WEBHOOK_URL="https://hooks.example/x",
        SLACK_EVENTS="task.failed",
        SMTP_URL="smtp://mail.example",
        NOTIFY_EMAIL_FROM="k@example.com",
        NOTIFY_EMAIL_TO="a@example.com,b@example.com",
        NOTIFY_EVENTS="task.archived,task.failed",
    )
    task = Task("t", client_callback_url="https://client.example/cb")
    archived = sinks_for(configured, task, "task.archived")
    assert archived == [
        Sink(SinkKind.WEBHOOK, "https://a.example/hook"),
        Sink(SinkKind.WEBHOOK, "https://client.example/cb", client=True),
        Sink(SinkKind.EMAIL, "a@example.com,b@example.com"),
    ]
    assert [s.kind for s in sinks_for(configured, task, "task.failed")] == [
        "webhook",
        "webhook",
        "slack",
        "email",
    ]
    assert sinks_for(configured, task, "task.processing") == []
    assert sinks_for(settings(), Task("t"), "task.archived") == []
    assert settings().notify_webhook_events == settings().notify_events == DEFAULT_NOTIFY_EVENTS


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"NOTIFY_EVENTS": "task.archived,task.exploded"}, "NOTIFY_EVENTS"),
        ({"SLACK_EVENTS": "archived"}, "SLACK_EVENTS"),
        ({"NOTIFY_WEBHOOK_URLS": "https://a.example/hook"}, "NOTIFY_WEBHOOK_SECRET"),
        ({"NOTIFY_RETRY_SCHEDULE_S": "5,soon"}, "NOTIFY_RETRY_SCHEDULE_S"),
        ({"NOTIFY_TIMEOUT_S": "0"}, "NOTIFY_TIMEOUT_S"),
        ({"SMTP_URL": "smtp://mail.example"}, "NOTIFY_EMAIL_FROM"),
    ],
)
def test_bad_notification_settings_name_the_variable(overrides: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as raised:
        settings(**overrides)
    assert str(raised.value).startswith(f"{variable}:")


def synthetic_event(event_type: str, **data: object) -> Event:
    body = {"type": event_type, "timestamp": "2026-11-21T10:00:00.000Z", "data": data}
    return Event("evt_x", event_type, "t-1", json.dumps(body), prompt="p " * 2000)


@pytest.mark.parametrize("event_type", [e.value for e in EventType])
def test_slack_blocks_stay_within_slacks_limits_for_every_event(event_type: str) -> None:
    huge = {"message": "why " * 2000, "reason": "r" * 300}
    event = synthetic_event(
        event_type,
        status="failed",
        model_name="m" * 300,
        error=huge,
        archive_error=huge,
        created_at=0,
        updated_at=4_000_000,
        task_result={"videos": [{"url": "https://cdn.example/v.mp4", "duration": "5.1"}]},
    )
    message = slack_message(event, "https://svc.example")
    for block in message["blocks"]:
        Block.parse(block).validate_json()
    assert message["text"].startswith(message["blocks"][0]["text"]["text"])


UNSAFE = [chr(c) for c in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))] + [
    chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
]


def test_control_and_bidi_characters_never_reach_slack_or_email() -> None:
    hostile = "".join(UNSAFE)
    event = synthetic_event(
        "task.failed",
        status="failed",
        model_name=f"model{hostile}",
        error={"message": f"line one{hostile}\n\tline two", "code": 1301},
    )
    event = Event(event.id, event.type, f"t-1{hostile}", event.payload, prompt=f"a{hostile}cat")
    slack = json.dumps(slack_message(event, "https://svc.example"), ensure_ascii=False)
    mail = email_message(event, "https://svc.example", "k@example.com", ("ops@example.com",))
    text, markup = parts(mail)
    for shown in (slack, text, markup, str(mail["Subject"])):
        assert not set(shown) & set(UNSAFE), [hex(ord(c)) for c in set(shown) & set(UNSAFE)]
    assert "acat" in slack and mail["Subject"] == "Task failed: acat"
    assert "Reason: line one\n\tline two (1301)" in text  # newline and tab stay where they belong


@pytest.fixture
def in_process(env: dict[str, str]) -> Iterator[tuple[Services, Receiver]]:
    """The jobs run in this process, with the test's Services."""
    receiver = Receiver()
    test_settings = Settings.from_env(
        {
            **env,
            "NOTIFY_WEBHOOK_URLS": receiver.script("/hook"),
            "NOTIFY_WEBHOOK_SECRET": SECRET,
            "NOTIFY_WEBHOOK_EVENTS": "task.submitted",
        }
    )
    svc = Services.build(test_settings)
    with running_jobs_with(svc):
        yield svc, receiver
    receiver.stop()


def run_jobs(svc: Services) -> None:
    SimpleWorker([Queue(NOTIFY_QUEUE, connection=svc.redis)], connection=svc.redis).work(burst=True)


def change_status_msg(task: Task) -> Outcome:
    task.status_msg = "changed"
    return Outcome.APPLIED


def test_fan_out_twice_makes_one_delivery_with_the_first_payload(in_process) -> None:
    svc, receiver = in_process
    svc.store.create(Task("twice"), request={"prompt": "a cat"})
    evt = event_id("twice", EventType.SUBMITTED)
    workers.notify.fan_out(evt, "twice", "task.submitted")
    svc.store.update("twice", change_status_msg)
    workers.notify.fan_out(evt, "twice", "task.submitted")

    store = svc.deliveries
    (found,) = store.list(task="twice")
    assert found.status == "delivered" and found.attempts == 1  # its first attempt made by the fan-out
    queue = Queue(NOTIFY_QUEUE, connection=svc.redis)
    assert queue.job_ids == [] and ScheduledJobRegistry(queue=queue).get_job_ids() == []  # no job left
    event = store.event(evt)
    assert event is not None and event.data["status_msg"] == ""  # built once, before the change
    run_jobs(svc)
    (request,) = receiver.received("/hook")
    assert request.body == event.payload.encode() and request.headers["webhook-id"] == evt


def test_an_event_is_kept_compressed_with_its_payload_as_sent_not_escaped_in_json(
    in_process,
) -> None:
    svc, receiver = in_process
    svc.store.create(Task("kept"), request={"prompt": 'a "quoted" cat\non two lines, ☃ \u2028'})
    evt = event_id("kept", EventType.SUBMITTED)
    workers.notify.fan_out(evt, "kept", "task.submitted")

    event = svc.deliveries.event(evt)
    stored = svc.redis.get(svc.keys.event(evt))
    assert event is not None and stored is not None
    text = zlib.decompress(stored)
    assert len(stored) < 0.7 * len(text)  # compressed: the event is the largest thing a task keeps
    assert text.endswith(event.payload.encode())  # as sent: not a JSON string with its quotes escaped
    assert len(text) - len(event.payload.encode()) < 200  # the other fields: one short line
    assert event.prompt == 'a "quoted" cat\non two lines, ☃ \u2028' and Event.from_stored(stored) == event
    run_jobs(svc)
    (request,) = receiver.received("/hook")
    assert request.body == event.payload.encode()


# How events were kept before: as one JSON object, then as a line of fields and the payload, uncompressed.
OLDER_FORMS = {
    "one JSON object": lambda event: json.dumps(asdict(event)).encode(),
    "uncompressed": lambda event: zlib.decompress(event.stored()),
}


@pytest.mark.parametrize("form", OLDER_FORMS)
def test_an_event_kept_as_before_is_still_sent_as_it_was_built(in_process, form: str) -> None:
    """Events stored in an earlier form (pending deliveries, dead letters waiting for a replay) are read
    as they were written, and send the bytes they were built with."""
    svc, receiver = in_process
    svc.store.create(Task("older"), request={"prompt": "a cat"})
    evt = event_id("older", EventType.SUBMITTED)
    payload = json.dumps({"type": "task.submitted", "timestamp": "2026-11-21T10:00:00.000Z", "data": {}})
    older = Event(evt, "task.submitted", "older", payload, "a cat\nsitting", "default")
    svc.redis.set(svc.keys.event(evt), OLDER_FORMS[form](older))
    workers.notify.fan_out(evt, "older", "task.submitted")  # finds the event: builds no other

    assert svc.deliveries.event(evt) == older
    run_jobs(svc)
    (request,) = receiver.received("/hook")
    assert request.body == payload.encode() and request.headers["webhook-id"] == evt


def test_a_delivery_job_run_again_sends_nothing_more(in_process) -> None:
    svc, receiver = in_process
    svc.store.create(Task("again"), request={})
    evt = event_id("again", EventType.SUBMITTED)
    workers.notify.fan_out(evt, "again", "task.submitted")
    run_jobs(svc)
    (found,) = svc.deliveries.list(task="again")
    assert found.status == "delivered"

    queue = Queue(NOTIFY_QUEUE, connection=svc.redis)
    queue.enqueue_call("workers.notify.deliver", args=(found.id,), job_id=found.id)  # a duplicate
    queue.enqueue_call("workers.notify.deliver", args=(found.id,), job_id=f"{found.id}-stale")
    run_jobs(svc)
    assert len(receiver.received("/hook")) == 1
    assert svc.deliveries.attempts(found.id)[0]["status_code"] == 200
