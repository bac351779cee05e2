"""Kling counts open tasks per resource pack (video, image, try-on), and an image task takes `n` slots:
one pool of slots per pack, so a full video pack never holds back an image, a 1303 pauses only its own
pack, and an image task asking for several images waits, first in line, until that many slots are free."""

from __future__ import annotations

import pytest
import redis
from rq.job import Job

from tests.conftest import Workers, make_service
from tests.support import wait_for
from tests.test_callbacks import post_callback
from webhook_service.domain.admission import Admission
from webhook_service.domain.gauges import exposition
from webhook_service.domain.submission import dispatch
from webhook_service.domain.task_types import Pack, task_type
from webhook_service.domain.tenants import tenant_of
from webhook_service.jobs import DISPATCH_JOB_ID, job_id
from webhook_service.keys import Keys

KEYS = Keys()
ASYNC = {"Prefer": "respond-async"}
VIDEO = {"image": "https://example.com/a.jpg", "prompt": "a lighthouse at dusk"}
PICTURE = {"prompt": "a lighthouse at dusk"}
HELD_OPEN = {"steps": [{"status": "processing", "delay": 0}, {"status": "succeed", "delay": 600}]}


@pytest.fixture
def connection(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def queued(admission: Admission, pack: Pack, *tasks: tuple[str, int]) -> None:
    for external_task_id, units in tasks:
        pipe = admission.redis.pipeline()
        admission.enqueue(pipe, external_task_id, tenant_of(external_task_id), pack=pack, units=units)
        pipe.execute()


def released(admission: Admission, external_task_id: str) -> None:
    pipe = admission.redis.pipeline()
    admission.release(pipe, external_task_id)
    pipe.execute()


def test_each_type_counts_in_its_own_pack_and_an_image_task_asks_n_slots() -> None:
    assert [task_type(name).pack for name in ("image2video", "text2video")] == [Pack.VIDEO, Pack.VIDEO]
    assert task_type("generations").pack is Pack.IMAGE and task_type("multi-image2image").pack is Pack.IMAGE
    assert task_type("kolors-virtual-try-on").pack is Pack.TRYON
    assert task_type("generations").slots_needed({"prompt": "x", "n": 4}) == 4
    assert task_type("generations").slots_needed({"prompt": "x"}) == 1
    assert task_type("image2video").slots_needed({"image": "x", "n": 4}) == 1  # videos have no n


def test_a_full_video_pack_holds_back_no_image_task(connection: redis.Redis) -> None:
    admission = Admission(connection, KEYS, {Pack.VIDEO: 1, Pack.IMAGE: 2, Pack.TRYON: 1})
    queued(admission, Pack.VIDEO, ("v1", 1), ("v2", 1))
    queued(admission, Pack.IMAGE, ("i1", 1), ("i2", 1))
    queued(admission, Pack.TRYON, ("t1", 1))
    assert [admission.take_next(Pack.VIDEO) for _ in range(2)] == ["v1", None]  # the video pack is full
    assert [admission.take_next(Pack.IMAGE) for _ in range(3)] == ["i1", "i2", None]
    assert admission.take_next(Pack.TRYON) == "t1"
    assert admission.in_flight() == 4 and admission.waiting() == 1
    assert admission.in_flight(Pack.IMAGE) == 2 and admission.waiting(Pack.VIDEO) == 1
    released(admission, "i1")  # freeing an image slot frees no video slot
    assert admission.take_next(Pack.VIDEO) is None
    released(admission, "v1")
    assert admission.take_next(Pack.VIDEO) == "v2"


def test_an_image_task_holds_n_slots_and_waits_first_in_line_for_them(connection: redis.Redis) -> None:
    admission = Admission(connection, KEYS, dict.fromkeys(Pack, 4))
    queued(admission, Pack.IMAGE, ("three", 3), ("two", 2), ("one", 1))
    assert admission.take_next(Pack.IMAGE) == "three"
    # One slot is free: "two" needs two, and "one" behind it does not jump ahead (it would starve "two").
    assert admission.take_next(Pack.IMAGE) is None
    image = next(state for state in admission.packs() if state.pack is Pack.IMAGE)
    assert (image.open_tasks, image.slots_used, image.waiting) == (1, 3, 2)
    released(admission, "three")
    assert [admission.take_next(Pack.IMAGE) for _ in range(3)] == ["two", "one", None]
    admission.put_back("two", Pack.IMAGE)  # refused for now: its slots are free again, its place kept
    image = next(state for state in admission.packs() if state.pack is Pack.IMAGE)
    assert (image.slots_used, image.waiting) == (1, 1)
    assert admission.take_next(Pack.IMAGE) == "two"


def test_a_task_asking_more_slots_than_the_pack_has_takes_the_whole_pack(connection: redis.Redis) -> None:
    admission = Admission(connection, KEYS, dict.fromkeys(Pack, 4))
    queued(admission, Pack.IMAGE, ("small", 1), ("nine", 9), ("after", 1))
    assert [admission.take_next(Pack.IMAGE) for _ in range(2)] == ["small", None]
    released(admission, "small")
    assert [admission.take_next(Pack.IMAGE) for _ in range(2)] == ["nine", None]  # never stuck
    released(admission, "nine")
    assert admission.take_next(Pack.IMAGE) == "after"


def test_a_pause_stops_only_its_own_pack(connection: redis.Redis) -> None:
    admission = Admission(connection, KEYS, dict.fromkeys(Pack, 4))
    queued(admission, Pack.IMAGE, ("picture", 1))
    queued(admission, Pack.VIDEO, ("clip", 1))
    delay = admission.pause(Pack.IMAGE)  # Kling said 1303 for an image task
    assert admission.take_next(Pack.IMAGE) is None and admission.paused_for_s(Pack.IMAGE) > 0
    assert admission.take_next(Pack.VIDEO) == "clip" and admission.paused_for_s(Pack.VIDEO) == 0
    assert 0 < admission.next_wake_s() <= delay  # when the worker comes back to send the image
    admission.resume(Pack.IMAGE)
    assert admission.take_next(Pack.IMAGE) == "picture" and admission.next_wake_s() == 0


def test_a_tenants_max_open_counts_its_tasks_in_every_pack(connection: redis.Redis) -> None:
    """max_open is the most tasks a tenant has upstream at once, whatever their packs: with 1 and work
    waiting in all three, one is upstream at a time, each pack goes on for the other tenants, and the
    tenant's next task goes, in whichever pack, when its open one finishes."""
    connection.hset(KEYS.tenant_max_open, "team-a", 1)
    admission = Admission(connection, KEYS, dict.fromkeys(Pack, 4))
    queued(admission, Pack.VIDEO, ("team-a~clip", 1))
    queued(admission, Pack.IMAGE, ("team-a~pic", 2), ("team-b~pic", 1))
    queued(admission, Pack.TRYON, ("team-a~fit", 1))

    def upstream(tenant: str) -> list[str]:
        held = (connection.zrange(KEYS.pack(pack).slots, 0, -1) for pack in Pack)
        return sorted(t.decode() for tasks in held for t in tasks if tenant_of(t.decode()) == tenant)

    assert admission.take_next(Pack.VIDEO) == "team-a~clip"
    assert admission.take_next(Pack.IMAGE) == "team-b~pic"  # team-a is passed over, the slot is not idle
    assert [admission.take_next(pack) for pack in Pack] == [None, None, None]
    released(admission, "team-a~clip")
    assert admission.take_next(Pack.TRYON) == "team-a~fit"
    assert admission.take_next(Pack.IMAGE) is None and upstream("team-a") == ["team-a~fit"]
    released(admission, "team-a~fit")
    assert admission.take_next(Pack.IMAGE) == "team-a~pic" and upstream("team-a") == ["team-a~pic"]
    assert admission.waiting() == 0 and admission.in_flight() == 2


def test_through_the_service_a_capped_tenants_task_in_another_pack_goes_when_its_open_one_ends(
    env, simulator
) -> None:
    """The wake-up a finished task gives: a video of a tenant with max_open 1 ends, its image waiting in
    the image pack (with nothing waiting in the video pack) is dispatched."""
    simulator.state.set_default(HELD_OPEN)
    key = "team-a-key-0123456789abcdefgh"
    service, server, _ = make_service(env, SUBMIT_WAIT_S="0", SERVICE_API_KEYS=f"team-a:{key}")
    try:
        services = service.services
        services.redis.hset(services.keys.tenant_max_open, "team-a", 1)
        auth = {"Authorization": f"Bearer {key}"}
        clip = service.http.post(
            "/v1/videos/image2video", json={**VIDEO, "external_task_id": "clip"}, headers=auth
        )
        assert clip.json()["data"]["task_status"] in ("submitted", "processing")
        picture = service.http.post(
            "/v1/images/generations", json={**PICTURE, "external_task_id": "pic"}, headers=auth
        )
        assert picture.json()["data"]["task_status"] == "queued"  # the image pack has room; team-a not
        assert [t["external_task_id"] for t in simulator.state.tasks()] == ["team-a~clip"]

        task_id = services.store.get("team-a~clip").task_id
        failed = {"task_id": task_id, "task_status": "failed", "task_status_msg": "done with it"}
        assert post_callback(service, "team-a~clip", failed).status_code == 200
        assert Job.exists(job_id(DISPATCH_JOB_ID, "freed-team-a~clip"), connection=services.redis)
        dispatch(services)  # what that job does
        assert services.store.get("team-a~pic").status in ("submitted", "processing")
        assert [t["external_task_id"] for t in simulator.state.tasks()] == ["team-a~clip", "team-a~pic"]
    finally:
        server.stop()


def test_through_the_service_an_image_goes_upstream_while_the_video_pack_is_full(env, simulator) -> None:
    """One slot per pack, and Kling (the simulator) also allows one open task per pack: the second
    video waits in the queue, the image beside it goes at once, and Kling never answered 1303."""
    simulator.state.set_default({**HELD_OPEN, "max_open": 1})
    service, server, _ = make_service(env, KLING_MAX_CONCURRENCY="1", SUBMIT_WAIT_S="0")
    try:
        first = service.http.post("/v1/videos/image2video", json={**VIDEO, "external_task_id": "clip-1"})
        assert first.json()["data"]["task_status"] in ("submitted", "processing")
        second = service.http.post("/v1/videos/image2video", json={**VIDEO, "external_task_id": "clip-2"})
        assert second.json()["data"]["task_status"] == "queued"
        picture = service.http.post("/v1/images/generations", json={**PICTURE, "external_task_id": "pic-1"})
        assert picture.status_code == 200, picture.text
        assert picture.json()["data"]["task_status"] in ("submitted", "processing")
        assert sorted(t["external_task_id"] for t in simulator.state.tasks()) == ["clip-1", "pic-1"]
        assert all(
            "create_deferred" not in str(service.services.store.history(e)) for e in ("clip-2", "pic-1")
        )

        page = service.http.get("/metrics").text
        assert 'kws_pack_tasks{pack="video",state="open"} 1.0' in page
        assert 'kws_pack_tasks{pack="video",state="queued"} 1.0' in page
        assert 'kws_pack_tasks{pack="image",state="open"} 1.0' in page
        assert exposition(service.services.redis, service.services.keys)
    finally:
        server.stop()


def test_a_1303_for_an_image_task_pauses_images_only(env, simulator) -> None:
    simulator.state.set_default({"steps": [{"status": "succeed", "delay": 0.05}]})
    simulator.state.set_scenario(
        "pic-refused", {"create_error": {"http": 429, "code": 1303, "message": "over the resource pack"}}
    )
    service, server, service_env = make_service(env, SUBMIT_WAIT_S="0", ARCHIVE_RETRY_BASE_S="0")
    workers = Workers(service_env)
    try:
        refused = service.http.post(
            "/v1/images/generations", json={**PICTURE, "external_task_id": "pic-refused"}
        )
        assert refused.json()["data"]["task_status"] == "queued"
        assert service.services.admission.paused_for_s(Pack.IMAGE) > 0
        later = service.http.post("/v1/images/generations", json={**PICTURE, "external_task_id": "pic-later"})
        assert later.json()["data"]["task_status"] == "queued"  # behind the pause
        clip = service.http.post("/v1/videos/image2video", json={**VIDEO, "external_task_id": "clip"})
        assert clip.json()["data"]["task_status"] in ("submitted", "processing", "succeed")  # not paused

        simulator.state.set_scenario("pic-refused", {"steps": [{"status": "succeed", "delay": 0.05}]})
        workers.start()  # the dispatch scheduled for the pause's end sends both images
        for external_id in ("pic-refused", "pic-later", "clip"):
            wait_for(
                lambda e=external_id: service.services.store.get(e).status == "succeed",
                timeout=60,
                what=f"{external_id} to succeed",
            )
        assert "create_deferred" in str(service.services.store.history("pic-refused"))
    finally:
        workers.stop()
        server.stop()
