"""Every dashboard route that names an object, walked over real HTTP signed in as team B against team A's
objects (tests/tenant_objects.py): task pages and their videos, images, inputs, thumbnails and audio,
deliveries' replay, endpoints' forms. Generated from the app's url_map, so a dashboard route added later
is covered without editing this test; a route parameter the walk cannot fill fails it.

Signed in as A, each page answers (at least one of A's references reaches it: the walk asks for real
objects); signed in as B, each answers exactly as for an object nobody has (404, or a form's "there is
no ..." message), shows nothing of A's, and changes nothing."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, cast

import httpx
import pytest
from werkzeug.routing import Map, Rule

from tests import test_notify
from tests.support import wait_for
from tests.tenant_objects import A, TeamA, team_a
from tests.test_inputs import b64
from tests.test_lip_sync import LIP_SYNC, VIDEO_URL, WAV
from tests.test_notify import Receiver, Stack
from tests.test_tenants import KEY_A, KEY_B

receiver, stack = test_notify.receiver, test_notify.stack  # the webhook tests' fixtures
# Route parameters naming one of A's objects: every reference to it B might try, and one to nobody's.
OBJECTS: dict[str, Callable[[TeamA], list[str]]] = {
    "task_ref": lambda a: [
        *(a.task_id, "job-1", "team-a~job-1"),  # a video task with an archived input image
        *("spoken-a", "team-a~spoken-a"),  # a lip-sync with archived audio
        *("picture-a", "team-a~picture-a"),  # an image task, its images archived
    ],
    "delivery_id": lambda a: [a.delivery_id],
    "endpoint_id": lambda a: [a.endpoint_id],
}
NOBODYS = {
    "task_ref": "no-such-task",
    "delivery_id": "dlv_0000000000000000",
    "endpoint_id": "ep_0000000000000000",
}
PLAIN = {"index": "0"}
NOT_OBJECTS = {"dashboard.static"}  # the stylesheet and script, by file name
# What a form sends besides its CSRF token: B tries to turn A's endpoint off.
FORMS = {"dashboard.set_enabled": {"enabled": "0"}}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
REQUEST_ID = re.compile(r'"request_id": ?"\w+"')
FLASH = re.compile(r'<p class="flash (\w+)" role="status">([^<]*)</p>')


def more_of_a(a: TeamA, simulator: Any) -> None:
    """A lip-sync task with its audio archived, and an image task with its images archived."""
    http = a.service.http
    spoken = {"video_url": VIDEO_URL, "mode": "audio2video", "audio_type": "file", "audio_file": b64(WAV)}
    assert (
        http.post(LIP_SYNC, json={"input": spoken, "external_task_id": "spoken-a"}, headers=A).status_code
        == 200
    )
    simulator.state.set_scenario("team-a~picture-a", {"steps": [{"status": "succeed", "delay": 0.1}]})
    picture = {"prompt": "a lighthouse", "external_task_id": "picture-a"}
    assert http.post("/v1/images/generations", json=picture, headers=A).status_code == 200

    def archived() -> bool:
        view = http.get("/v1/tasks/picture-a", headers=A).json()["data"]
        return bool(view["archive_state"] == "archived")

    wait_for(archived, timeout=30, what="team-a's image task archived")
    a.secrets |= {"spoken-a", "picture-a"}


def signed_in(a: TeamA, key: str) -> httpx.Client:
    client = httpx.Client(base_url=a.service.url, timeout=10)
    page = client.get("/login").text
    token = CSRF.search(page)
    assert token, "no CSRF token on /login"
    signed = client.post("/login", data={"credential": key, "csrf_token": token[1]})
    assert signed.status_code == 302, signed.text
    return client


def routes(a: TeamA) -> Iterator[tuple[Rule, str]]:
    """The dashboard's routes that name an object, with each method they take."""
    for rule in a.service.app.url_map.iter_rules():
        if not rule.endpoint.startswith("dashboard.") or rule.endpoint in NOT_OBJECTS or not rule.arguments:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield rule, method


Named = tuple[str, list[str]]  # a URL, and the references in it


def urls(rule: Rule, a: TeamA) -> tuple[list[Named], Named]:
    """The rule's URLs naming A's objects (each with the references in it), and the one naming nobody's;
    a parameter the walk cannot fill fails it."""
    unknown = rule.arguments - set(OBJECTS) - set(PLAIN)
    assert not unknown, (
        f"{rule.rule}: the dashboard walk cannot fill {sorted(unknown)}: teach it (OBJECTS or PLAIN)"
    )
    named = {name: OBJECTS[name](a) for name in rule.arguments if name in OBJECTS}
    turns = max(len(refs) for refs in named.values())
    found = []
    for n in range(turns):
        values = {**PLAIN, **{name: refs[n % len(refs)] for name, refs in named.items()}}
        found.append((_build(rule, values), [values[name] for name in named]))
    nobodys = {name: NOBODYS[name] for name in named}
    return found, (_build(rule, {**PLAIN, **nobodys}), list(nobodys.values()))


def _build(rule: Rule, values: dict[str, str]) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m[1]], rule.rule)


def shown(client: httpx.Client, answer: httpx.Response, refs: list[str]) -> Any:
    """An answer as compared with another: its status and where it sends the browser, its text (or, for
    a form, the messages of the page it leads to), the references asked about and tokens left out."""
    text = answer.text
    if answer.status_code == 302:
        location = answer.headers["location"]
        text = f"{location} {FLASH.findall(client.get(location).text)}"
    for ref in sorted(refs, key=len, reverse=True):
        text = text.replace(ref, "<ref>").replace(ref.replace("~", "%7E"), "<ref>")
    return answer.status_code, REQUEST_ID.sub("", CSRF.sub("", text))


def ask(client: httpx.Client, method: str, url: str, form: dict[str, str]) -> httpx.Response:
    if method == "GET":
        return client.get(url)
    token = CSRF.search(client.get("/").text)
    assert token, "no CSRF token on the task list"
    return client.post(url, data={"csrf_token": token[1], **form})


def test_walking_every_dashboard_route_as_another_tenant_finds_and_changes_nothing(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    a = team_a(stack, simulator, receiver)
    more_of_a(a, simulator)
    before = a.snapshot()
    as_a, as_b = signed_in(a, KEY_A), signed_in(a, KEY_B)

    walked = []
    for rule, method in routes(a):
        named, (nobodys_url, nobodys_refs) = urls(rule, a)
        form = FORMS.get(rule.endpoint, {})
        if method == "GET":  # A reaches it: the walk asks for real objects
            reached = [url for url, _ in named if as_a.get(url).status_code == 200]
            assert reached, f"{rule.rule}: team-a reaches none of its own {[url for url, _ in named]}"
        nobodys = shown(as_b, ask(as_b, method, nobodys_url, form), nobodys_refs)
        for url, refs in named:
            answer = ask(as_b, method, url, form)
            walked.append((rule.endpoint, method, answer.status_code))
            where = f"{method} {url} as team-b"
            leaked = a.leaked(answer, url)
            assert not leaked, f"{where} showed {leaked}"
            assert answer.status_code in (302, 404), f"{where}: {answer.status_code} {answer.text}"
            assert shown(as_b, answer, refs) == nobodys, f"{where}: {answer.text}"

    endpoints = {endpoint for endpoint, _, _ in walked}
    assert {
        "dashboard.task_page",
        "dashboard.task_video",
        "dashboard.task_image",
        "dashboard.task_input",
        "dashboard.task_input_thumbnail",
        "dashboard.task_audio",
        "dashboard.replay_one",
        "dashboard.set_enabled",
        "dashboard.rotate_secret",
        "dashboard.send_test",
    } <= endpoints
    assert a.snapshot() == before  # nothing replayed, no endpoint disabled, rotated or pinged

    usage = as_b.get("/usage", params={"tenant": "team-a"})  # an admin's filter: B's own usage regardless
    assert usage.status_code == 200 and "team-a" not in usage.text


def test_a_route_parameter_the_walk_cannot_fill_fails_it() -> None:
    """A dashboard route added with a parameter nobody taught the walk is not skipped: the walk stops and
    says what to teach it."""
    rule = Rule("/things/<thing_id>", endpoint="dashboard.thing")
    Map([rule])  # binding it works out its arguments
    with pytest.raises(AssertionError, match=r"cannot fill \['thing_id'\]: teach it"):
        urls(rule, cast(TeamA, None))
