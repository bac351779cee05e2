"""Every route of the OpenAPI document walked as team B against team A's objects (tests/tenant_objects.py):
B sees and changes nothing of A's. Generated from the document, so a route added later is covered
without editing this test; but the walk must know what each of its parameters names. A path or query
parameter it has not been taught fails it, and so does a body that names a video or face session, or a
body of a route that is no create, until it has an entry in the tables here.

Each request naming A's object (by every reference a client may use: Kling's task_id, the client's own
id, the upstream id) must be answered exactly as the same request naming an object nobody has, and show
nothing of A's; a route that names no object must answer B with its own (200), showing nothing of A's."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any, cast

import httpx
import pytest

from tests import test_notify
from tests.tenant_objects import A, B, TeamA, team_a
from tests.test_notify import Receiver, Stack
from tests.test_tenants import KEY_ADMIN, KEY_B, bearer
from webhook_service.web.openapi import document

receiver, stack = test_notify.receiver, test_notify.stack  # the webhook tests' fixtures
# Paths that hold no tenant's objects: Kling's callbacks (their token names the task), health, docs,
# and /metrics (test_tenant_metrics.py).
NOT_TENANT_DATA = {"/callbacks/kling", "/healthz", "/readyz", "/openapi.json", "/docs", "/metrics"}
# Path parameters naming one of A's objects: every reference to it B might try, and one to nobody's.
PATH_OBJECTS: dict[str, Callable[[TeamA], list[str]]] = {
    "task_ref": lambda a: [a.task_id, "job-1", "team-a~job-1"],
    "delivery_id": lambda a: [a.delivery_id],
    "endpoint": lambda a: [a.endpoint],  # a disabled callback_url by its id (by its URL: ?url=)
    "endpoint_id": lambda a: [a.endpoint_id],
}
# Query parameters naming one of A's objects, or A itself.
QUERY_OBJECTS: dict[str, Callable[[TeamA], list[str]]] = {
    "task": lambda a: [a.task_id, "job-1", "team-a~job-1"],  # /v1/deliveries?task=
    "task_ids": lambda a: [a.unified_id, a.task_id],  # GET /tasks, Kling's unified API
    "external_task_ids": lambda a: ["unified-a", "team-a~unified-a"],
    "tenant": lambda a: ["team-a"],  # /v1/usage, /v1/events: an admin's
    "url": lambda a: [a.hook],  # enabling a disabled URL by the URL
    "endpoint": lambda a: [a.endpoint_id],  # /v1/deliveries?endpoint=: a managed endpoint's deliveries
}
NOBODYS = {
    "task_ref": "no-such-task",
    "delivery_id": "dlv_0000000000000000",
    "endpoint": "ep_0000000000000000",
    "endpoint_id": "ep_0000000000000000",
    "task": "no-such-task",
    "task_ids": "000000000000000000",
    "external_task_ids": "no-such-task",
    "tenant": "team-z",
    "url": "http://127.0.0.1:9/nobodys-hook",
}
# Parameters naming nothing of anyone's: sent as here (None: left out, the route's default then).
PLAIN = {
    "index": "0",
    "since": "1d",
    "pageNum": "1",
    "pageSize": "500",
    "offset": "0",
    "limit": "100",
    **dict.fromkeys(
        ["status", "type", "from", "to", "after", "types", "task_types", "wait", "Prefer", "Last-Event-ID"]
    ),
}
# What a body may name of another object: sent by B naming A's, a create must be refused on that field.
REFERENCES = {"video_id", "session_id"}
A_FACE = {
    "face_id": "0",
    "audio_id": "a",
    "sound_start_time": 0,
    "sound_end_time": 2000,
    "sound_insert_time": 0,
}
# Per path (under / or /kling): a body naming A's video or face session, and the field refused.
NAMING_A = {
    "/v1/videos/video-extend": ({"video_id": "<video>"}, "video_id"),
    "/v1/videos/lip-sync": (
        {"input": {"video_id": "<video>", "mode": "text2video", "text": "hi", "voice_id": "uk_man2"}},
        "input.video_id",
    ),
    "/v1/videos/identify-face": ({"video_id": "<video>"}, "video_id"),
    "/v1/videos/advanced-lip-sync": ({"session_id": "<session>", "face_choose": [A_FACE]}, "session_id"),
}
# Per path: the body of an operation that is no create (B's own object): it asks for or changes A's.
BODIES = {
    "/v1/endpoints/{endpoint_id}": {"enabled": False, "description": "team-b was here"},
    "/tasks": {"limit": 500},  # Kling's unified list, asked for everything
}


def upstream_ids(simulator: Any) -> list[str]:
    return [task["external_task_id"] for task in simulator.state.tasks()]


def _names(schema: Any, doc: dict[str, Any]) -> set[str]:
    """Every property name a body schema allows, at any depth, its references followed."""
    if isinstance(schema, list):
        return set().union(*(_names(item, doc) for item in schema))
    if not isinstance(schema, dict):
        return set()
    if "$ref" in schema:
        return _names(doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]], doc)
    own = set(schema.get("properties", {}))
    return own.union(*(_names(value, doc) for value in schema.values()))


def _naming(path: str, ids: dict[str, str]) -> tuple[dict[str, Any], str]:
    """The path's body naming these video and session ids, and the field that names them."""
    body, field = NAMING_A[path.removeprefix("/kling")]
    text = json.dumps(body).replace("<video>", ids["video"]).replace("<session>", ids["session"])
    return json.loads(text), field


def _refused_as_unknown(a: TeamA, path: str) -> tuple[str, str]:
    """B names A's video or session in a create: refused on that field, and answered exactly as for an
    id nobody has. Returns the method and path, as the walk records them."""
    http = a.service.http
    body, field = _naming(path, {"video": a.video, "session": a.session})
    theirs = http.post(path, json=body, headers=B)
    unknown, _ = _naming(path, {"video": "no-such-video", "session": "no-such-session"})
    nobodys = http.post(path, json=unknown, headers=B)
    assert theirs.status_code == 400, f"post {path} naming team-a's {field} as team-b: {theirs.text}"
    assert [(e["field"], e["code"]) for e in theirs.json()["errors"]] == [(field, "not_yours")]
    assert {**theirs.json(), "request_id": ""} == {**nobodys.json(), "request_id": ""}
    return "post", path


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        if path in NOT_TENANT_DATA:
            continue
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield path, method, operation


def _objects(a: TeamA, path: str, params: list[dict[str, Any]]) -> dict[str, list[str]]:
    """A's values for each parameter of the operation that names an object; a parameter the walk does
    not know fails it."""
    found = {}
    for param in params:
        name, where = param["name"], param["in"]
        table = PATH_OBJECTS if where == "path" else QUERY_OBJECTS
        if name in table:
            found[name] = table[name](a)
        else:
            assert name in PLAIN, (
                f"{path}: the tenant walk does not know the {where} parameter {name!r}: teach it "
                "(PATH_OBJECTS or QUERY_OBJECTS if it names an object of a tenant's, PLAIN if not)"
            )
    return found


def _asking(objects: dict[str, list[str]]) -> list[dict[str, str]]:
    """The object parameters of each request: every path parameter (a route needs them all), each with
    its every reference in turn; a query parameter one at a time (two may exclude each other, as GET
    /tasks' `task_ids` and `external_task_ids` do), with each of its references."""
    path = {name: refs for name, refs in objects.items() if name in PATH_OBJECTS}
    query = {name: refs for name, refs in objects.items() if name not in PATH_OBJECTS}
    turns = max((len(refs) for refs in path.values()), default=1)
    named = [{name: refs[n % len(refs)] for name, refs in path.items()} for n in range(turns)]
    return [{**named[0], name: ref} for name, refs in query.items() for ref in refs] if query else named


def _shown(answer: httpx.Response, sent: list[str]) -> Any:
    """An answer as compared with another: its status, and its body with the ids it was asked about
    (which an error message may quote) and its request id left out."""
    text = answer.text
    for value in sorted(sent, key=len, reverse=True):
        text = text.replace(json.dumps(value)[1:-1], "<ref>")
    try:
        body = json.loads(text)
    except ValueError:
        return answer.status_code, answer.headers.get("content-type"), text
    if isinstance(body, dict):
        body.pop("request_id", None)
    return answer.status_code, body


def _request(
    a: TeamA, method: str, path: str, values: dict[str, str], body: Any
) -> tuple[httpx.Response, str]:
    """B's request with these parameter values; the answer, and what was sent (as text)."""
    url = re.sub(r"\{(\w+)\}", lambda m: values[m[1]], path)
    query = {name: value for name, value in values.items() if f"{{{name}}}" not in path and value is not None}
    answer = a.service.http.request(method.upper(), url, params=query, json=body, headers=bearer(KEY_B))
    return answer, f"{url} {query} {json.dumps(body)}"


def test_walking_every_route_as_another_tenant_finds_and_changes_nothing(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    a = team_a(stack, simulator, receiver)
    before = a.snapshot()
    upstream_before = (upstream_ids(simulator), simulator.state.face_sessions())

    walked = []
    doc = document(a.service.services.settings, auth_required=True)
    for path, method, operation in _operations(doc):
        params = operation.get("parameters", [])
        objects = _objects(a, path, params)
        plain = {
            p["name"]: PLAIN[p["name"]] for p in params if p["name"] not in objects and p["in"] != "header"
        }
        body = None
        if "requestBody" in operation:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            if named := REFERENCES & _names(schema, doc):
                assert path.removeprefix("/kling") in NAMING_A, f"{method} {path} names {named}: add its body"
                walked.append(_refused_as_unknown(a, path))
                continue
            if operation["operationId"].startswith("create"):
                continue  # makes B's own object, naming none of A's: the rest of the tests cover it
            assert path.removeprefix("/kling") in BODIES, f"{method} {path} takes a body: add one to BODIES"
            body = BODIES[path.removeprefix("/kling")]
        if "{" not in path:  # naming no object (a list, everything since a time): B's own, none of A's
            answer, sent = _request(a, method, path, plain, body)
            walked.append((method, path, answer.status_code))
            where = f"{method} {path} with {plain} as team-b"
            assert not a.leaked(answer, sent), f"{where} showed {a.leaked(answer, sent)}"
            # Only a route that needs an object named (GET /tasks, enabling a URL) may refuse to go without.
            needs_one = bool(objects) and answer.status_code in (400, 404)
            assert answer.status_code == 200 or needs_one, f"{where}: {answer.status_code} {answer.text}"
        for named in _asking(objects):
            values = {**plain, **named}
            answer, sent = _request(a, method, path, values, body)
            walked.append((method, path, answer.status_code))
            where = f"{method} {path} with {values} as team-b"
            assert not a.leaked(answer, sent), f"{where} showed {a.leaked(answer, sent)}"
            if "{" in path:
                assert answer.status_code == 404, f"{where}: {answer.status_code} {answer.text}"
            nobodys_values = {**plain, **{name: NOBODYS[name] for name in named}}
            nobodys = _shown(_request(a, method, path, nobodys_values, body)[0], [NOBODYS[n] for n in named])
            assert _shown(answer, list(named.values())) == nobodys, f"{where}: {answer.text}"

    assert ("get", "/v1/tasks/{task_ref}/videos/{index}", 404) in walked
    assert ("get", "/v1/deliveries", 200) in walked  # ?task= A's: nothing, as for nobody's task
    assert {("get", "/v1/usage", 400), ("get", "/v1/events", 400)} <= set(
        walked
    )  # ?tenant=team-a: an admin's
    assert ("post", "/v1/deliveries/replay", 200) in walked
    assert ("delete", "/v1/deliveries/disabled-endpoints", 404) in walked
    assert ("post", "/v1/endpoints/{endpoint_id}/test", 404) in walked
    assert ("delete", "/v1/endpoints/{endpoint_id}", 404) in walked
    assert ("patch", "/v1/endpoints/{endpoint_id}", 404) in walked
    assert {("post", "/tasks", 200), ("post", "/kling/tasks", 200)} <= set(walked)
    for path in NAMING_A:
        assert {("post", path), ("post", f"/kling{path}")} <= set(walked)
    # Nothing B sent reached Kling (no task, no face session), and A's objects are as they were: nothing
    # replayed, no endpoint enabled, changed, rotated or deleted, no attempt sent.
    assert (upstream_ids(simulator), simulator.state.face_sessions()) == upstream_before
    assert a.snapshot() == before
    assert a.service.http.get("/v1/deliveries/disabled-endpoints", headers=B).json()["data"] == []

    # An admin sees and reaches both tenants' objects.
    http, admin = a.service.http, bearer(KEY_ADMIN)
    delivery = http.get(f"/v1/deliveries/{a.delivery_id}", headers=admin)
    assert delivery.status_code == 200 and delivery.json()["data"]["tenant"] == "team-a"
    assert delivery.json()["data"]["external_task_id"] == "job-1"
    video = http.get(f"/v1/tasks/{a.task_id}/videos/0", headers=admin)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    own_video = http.get(before["task"]["archived_videos"][0]["url"], headers=A)
    assert own_video.status_code == 200 and own_video.content == video.content


@pytest.mark.parametrize("where", ["path", "query"])
def test_a_parameter_the_walk_does_not_know_fails_it(where: str) -> None:
    """A route added with a parameter nobody taught the walk (`/v1/things/{thing_id}`) is not walked
    with an empty value, which Flask's 404 would pass: the walk stops and says what to teach it."""
    with pytest.raises(AssertionError, match=f"does not know the {where} parameter 'thing_id': teach it"):
        _objects(cast(TeamA, None), "/v1/things/{thing_id}", [{"name": "thing_id", "in": where}])
