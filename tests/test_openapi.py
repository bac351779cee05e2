"""The OpenAPI document: valid, complete, rendered without the internet, and true of the running service
(schemathesis sends generated requests, valid and invalid, and checks every answer against it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Service, Workers, make_service
from tests.support import loopback_name, wait_for
from webhook_service.domain.callback_tokens import CALLBACK_PATH
from webhook_service.domain.task_types import task_type
from webhook_service.web.app import create_app

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 12
IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a cat"}


def documented(app: Flask) -> dict:
    return app.test_client().get("/openapi.json").get_json()


def test_the_document_is_valid_openapi_3_1_and_names_every_route(env: dict[str, str]) -> None:
    app = create_app(
        {**env, "SERVICE_API_KEYS": "client-key-0123456789abcdef", "KLING_EXTRA_FIELDS": "new_field"}
    )
    doc = documented(app)  # open without credentials: a client reads it before it has any
    assert doc["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(doc).validate()
    routes = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint.split(".")[0] not in ("static", "dashboard")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    routes.add((CALLBACK_PATH, "post"))  # served in front of Flask (webhook_service/callbacks.py)
    described = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert routes == described
    assert doc["security"] == [{"bearer": []}]
    body = doc["paths"]["/v1/videos/image2video"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert body["properties"]["new_field"] == {} and body["additionalProperties"] is False
    # From validation.py's own types: "5" and "10", and kling-v3's "3" to "15".
    assert body["properties"]["duration"]["enum"] == [str(seconds) for seconds in range(3, 16)]
    assert doc["paths"]["/healthz"]["get"]["security"] == []


def test_the_docs_page_needs_nothing_from_outside(client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.content_type.startswith("text/html")
    html = page.get_data(as_text=True)
    assert 'fetch("openapi.json"' in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # no CDN, no external script or style


TOO_LONG = "9" * 400 + "w"


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/v1/deliveries?limit=%C2%B2"),  # "²": str.isdigit() says yes, int() says no
        ("GET", "/v1/deliveries?offset=%D9%A1%C2%B2"),
        ("GET", f"/v1/deliveries?since={TOO_LONG}"),  # a float too large for an int
        ("POST", f"/v1/deliveries/replay?since={TOO_LONG}"),
        ("GET", "/v1/videos/image2video?pageSize=%C2%B2"),
    ],
)
def test_numbers_that_are_not_quite_numbers_are_400_not_500(client, method: str, url: str) -> None:
    answer = client.open(url, method=method)
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert answer.get_json()["code"] == 1201


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_the_docs_page_renders_every_operation_in_a_browser(service: Service) -> None:
    browser = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    dom = subprocess.run(
        [*browser, "--dump-dom", f"{service.url}/docs"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    doc = service.http.get("/openapi.json").json()
    for path in doc["paths"]:
        assert f'<span class="path">{path}</span>' in dom, path
    assert "Request body" in dom and "external_task_id" in dom
    assert "[object" not in dom  # an element turned into text
    assert '<p id="error"></p>' in dom  # loaded and rendered without an error


@pytest.fixture
def live(env: dict[str, str]) -> Iterator[Service]:
    """The service with a worker, so tasks are archived and deliveries made; no waiting for slots, nor
    for events: each generated long-poll or stream would hold its request up to 30 s, so here none may
    (EVENTS_WAITING_MAX=0: the budget's own answers; tests/test_events_stream.py waits)."""
    service, server, service_env = make_service(
        {**env, "ARCHIVE_RETRY_BASE_S": "0"},
        SUBMIT_WAIT_S="0",
        KLING_MAX_CONCURRENCY="1000",
        EVENTS_WAITING_MAX="0",
    )
    workers = Workers(service_env)
    workers.start()
    yield service
    workers.stop()
    server.stop()


def fuzz(operation: schemathesis.APIOperation, mode: GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,  # the same requests every run: a failure here is reproducible
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    try:
        check()
    except Unsatisfiable:
        # Nothing in this operation can be made invalid (no input, or only free-form strings).
        assert mode is GenerationMode.NEGATIVE, operation.label


# schemathesis draws values at random inside its strategies; Hypothesis warns about it, harmlessly.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
# Bounded by its count (EXAMPLES_PER_OPERATION for every operation of the document, both modes), not by the
# suite's 120 s per test, which a loaded machine exceeds with nothing wrong (230 s seen).
@pytest.mark.timeout(900)
def test_generated_requests_get_no_500_and_only_documented_answers(live: Service) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(result.ok(), mode)


def test_real_answers_with_data_match_the_document(live: Service) -> None:
    """Generated ids find nothing: here the answers about a real archived task and a dead letter."""
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    internal = f"http://{loopback_name()}:9/"  # passes submission, refused at delivery: a dead letter
    refused = live.submit({**IMAGE, "external_task_id": "oa-1", "callback_url": internal})
    schema["/v1/videos/image2video"]["POST"].validate_response(refused)
    wait_for(
        lambda: live.http.get("/v1/tasks/oa-1").json()["data"]["archive_state"] == "archived",
        timeout=30,
        what="the archive",
    )
    letters = wait_for(
        lambda: live.http.get("/v1/deliveries", params={"status": "failed"}).json()["data"],
        timeout=30,
        what="a dead letter (loopback callback_url)",
    )
    calls = [
        ("/v1/videos/image2video/{task_ref}", "GET", "/v1/videos/image2video/oa-1", {}),
        ("/kling/v1/videos/image2video", "GET", "/kling/v1/videos/image2video", {}),
        ("/v1/tasks/{task_ref}", "GET", "/v1/tasks/oa-1", {}),
        ("/v1/tasks/{task_ref}/videos/{index}", "GET", "/v1/tasks/oa-1/videos/0", {}),
        ("/v1/tasks/{task_ref}/videos/{index}", "GET", "/v1/tasks/oa-1/videos/0", {"Range": "bytes=0-9"}),
        ("/v1/deliveries", "GET", "/v1/deliveries?task=oa-1", {}),
        ("/v1/deliveries/{delivery_id}", "GET", f"/v1/deliveries/{letters[0]['id']}", {}),
        ("/v1/deliveries/{delivery_id}/replay", "POST", f"/v1/deliveries/{letters[0]['id']}/replay", {}),
        ("/v1/deliveries/replay", "POST", "/v1/deliveries/replay?since=1h", {}),
        ("/v1/events", "GET", "/v1/events", {}),
        ("/metrics", "GET", "/metrics", {}),
        ("/readyz", "GET", "/readyz", {}),
    ]
    for template, method, url, headers in calls:
        answer = httpx.request(method, live.url + url, headers=headers, timeout=10)
        assert answer.status_code in (200, 206), (url, answer.status_code, answer.text[:200])
        schema[template][method].validate_response(answer)


IMAGE_BODIES = {
    "generations": {"prompt": "a kite", "n": 2},
    "kolors-virtual-try-on": {
        "human_image": "https://example.com/p.jpg",
        "cloth_image": "https://example.com/c.jpg",
    },
    "multi-image2image": {"subject_image_list": [{"subject_image": "https://example.com/s.jpg"}], "n": 2},
    "expand": {
        "image": "https://example.com/i.jpg",
        **{f"{side}_expansion_ratio": 0.2 for side in ("up", "down", "left", "right")},
        "n": 2,
    },
}


@pytest.mark.parametrize("type_name", list(IMAGE_BODIES))
def test_an_image_task_and_its_archived_image_match_the_document(live: Service, type_name: str) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    path = task_type(type_name).path  # expand is one level deeper: /v1/images/editing/expand
    created = live.http.post(path, json={**IMAGE_BODIES[type_name], "external_task_id": "oa-img"})
    schema[path]["POST"].validate_response(created)
    wait_for(
        lambda: live.http.get("/v1/tasks/oa-img").json()["data"]["archive_state"] == "archived",
        timeout=30,
        what="the archive",
    )
    calls = [
        (f"{path}/{{task_ref}}", f"{path}/oa-img"),
        (f"/kling{path}", f"/kling{path}"),
        ("/v1/tasks/{task_ref}", "/v1/tasks/oa-img"),
        ("/v1/tasks/{task_ref}/images/{index}", "/v1/tasks/oa-img/images/0"),
    ]
    for template, url in calls:
        answer = httpx.get(live.url + url, timeout=10)
        assert answer.status_code == 200, (url, answer.text[:200])
        schema[template]["GET"].validate_response(answer)
    assert httpx.get(live.url + "/v1/tasks/oa-img/images/0").headers["content-type"] == "image/png"


def test_a_video_extension_and_the_links_between_the_tasks_match_the_document(live: Service) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")

    def archived_view(ref: str) -> dict[str, object]:
        return wait_for(
            lambda: (
                (view := live.http.get(f"/v1/tasks/{ref}").json()["data"])["archive_state"] == "archived"
                and view
            ),
            timeout=30,
            what=f"{ref}'s archive",
        )

    live.http.post("/v1/videos/text2video", json={"prompt": "a kite", "external_task_id": "oa-parent"})
    video_id = archived_view("oa-parent")["task_result"]["videos"][0]["id"]
    path = "/v1/videos/video-extend"
    created = live.http.post(path, json={"video_id": video_id, "external_task_id": "oa-ext"})
    schema[path]["POST"].validate_response(created)
    refused = live.http.post(path, json={"video_id": "not-a-video-of-ours"})
    assert refused.status_code == 400
    schema[path]["POST"].validate_response(refused)
    assert archived_view("oa-ext")["parent_task"]["external_task_id"] == "oa-parent"
    calls = [
        (f"{path}/{{task_ref}}", f"{path}/oa-ext"),
        (f"/kling{path}", f"/kling{path}"),
        ("/v1/tasks/{task_ref}", "/v1/tasks/oa-ext"),
        ("/v1/tasks/{task_ref}", "/v1/tasks/oa-parent"),
    ]
    for template, url in calls:
        answer = httpx.get(live.url + url, timeout=10)
        assert answer.status_code == 200, (url, answer.text[:200])
        schema[template]["GET"].validate_response(answer)


VIDEO_BODIES = {
    "effects": {
        "effect_scene": "hug",
        "input": {"images": ["https://example.com/l.jpg", "https://example.com/r.jpg"], "duration": "5"},
    },
}


@pytest.mark.parametrize("type_name", list(VIDEO_BODIES))
def test_a_video_task_of_another_type_and_its_archived_video_match_the_document(
    live: Service, type_name: str
) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    path = f"/v1/videos/{type_name}"
    created = live.http.post(path, json={**VIDEO_BODIES[type_name], "external_task_id": "oa-vid"})
    schema[path]["POST"].validate_response(created)
    wait_for(
        lambda: live.http.get("/v1/tasks/oa-vid").json()["data"]["archive_state"] == "archived",
        timeout=30,
        what="the archive",
    )
    calls = [
        (f"{path}/{{task_ref}}", f"{path}/oa-vid"),
        (f"/kling{path}", f"/kling{path}"),
        ("/v1/tasks/{task_ref}", "/v1/tasks/oa-vid"),
        ("/v1/tasks/{task_ref}/videos/{index}", "/v1/tasks/oa-vid/videos/0"),
    ]
    for template, url in calls:
        answer = httpx.get(live.url + url, timeout=10)
        assert answer.status_code == 200, (url, answer.text[:200])
        schema[template]["GET"].validate_response(answer)
    assert httpx.get(live.url + "/v1/tasks/oa-vid/videos/0").headers["content-type"] == "video/mp4"


def test_lip_sync_tasks_and_identify_face_match_the_document(live: Service) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    lip_sync, advanced, identify = (
        f"/v1/videos/{name}" for name in ("lip-sync", "advanced-lip-sync", "identify-face")
    )
    text = {
        "video_url": "https://example.com/v.mp4",
        "mode": "text2video",
        "text": "hi",
        "voice_id": "uk_man2",
    }
    created = live.http.post(lip_sync, json={"input": text, "external_task_id": "oa-ls"})
    schema[lip_sync]["POST"].validate_response(created)
    for body in ({"video_url": "https://example.com/v.mp4"}, {"video_id": "not-a-video-of-ours"}, {}):
        answer = live.http.post(f"/kling{identify}", json=body)
        assert answer.status_code == (200 if "video_url" in body else 400), answer.text
        schema[f"/kling{identify}"]["POST"].validate_response(answer)
    faces = live.http.post(identify, json={"video_url": "https://example.com/v.mp4"}).json()["data"]
    face = {
        "face_id": "0",
        "audio_id": "a1",
        "sound_start_time": 0,
        "sound_end_time": 2000,
        "sound_insert_time": 0,
    }
    body = {"session_id": faces["session_id"], "face_choose": [face], "external_task_id": "oa-als"}
    schema[advanced]["POST"].validate_response(live.http.post(advanced, json=body))
    for ref in ("oa-ls", "oa-als"):
        wait_for(
            lambda ref=ref: live.http.get(f"/v1/tasks/{ref}").json()["data"]["archive_state"] == "archived",
            timeout=30,
            what=f"{ref}'s archive",
        )
    for template, url in (
        (f"{lip_sync}/{{task_ref}}", f"{lip_sync}/oa-ls"),
        (f"{advanced}/{{task_ref}}", f"{advanced}/oa-als"),
        (f"/kling{advanced}", f"/kling{advanced}"),
    ):
        answer = httpx.get(live.url + url, timeout=10)
        assert answer.status_code == 200, (url, answer.text[:200])
        schema[template]["GET"].validate_response(answer)
