"""The dashboard through Flask's test client: sign-in with the API's credentials, CSRF on its forms
only, the task list's filters and pages, the task page, deliveries with replay, the system panel."""

from __future__ import annotations

import base64
import io
import re
import time
from pathlib import Path

import jwt
import PIL.Image
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support import free_port
from webhook_service.domain.submission import accept
from webhook_service.domain.tasks import ArchiveState, Status, StatusUpdate, Task, apply_update
from webhook_service.jobs import ALL_QUEUES
from webhook_service.notify.records import Delivery, DeliveryStatus
from webhook_service.notify.routing import SinkKind
from webhook_service.notify.sinks import Attempt
from webhook_service.web.app import create_app
from webhook_service.web.dashboard.thumbnails import thumbnail_key

KEY = "operator-key-0123456789abcdef"


@pytest.fixture
def locked(env: dict[str, str]) -> Flask:
    """The service with client credentials: the dashboard asks for them."""
    return create_app({**env, "SERVICE_API_KEYS": f"{KEY},other-key-0123456789abcdef"})


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match, f"no CSRF token on {path}"
    return match[1]


def login(client: FlaskClient, credential: str = KEY, next_path: str = "/") -> None:
    response = client.post(
        "/login", data={"credential": credential, "csrf_token": csrf_token(client), "next": next_path}
    )
    assert response.status_code == 302, response.text


def add_task(app: Flask, external_id: str, status: Status = Status.SUCCEED, **request: object) -> Task:
    task = Task(external_task_id=external_id, model_name="kling-v2-master")
    store = app.extensions["webhook_service"].store
    store.create(
        task, {"prompt": f"prompt of {external_id}", "image": "https://127.0.0.1:9/a.png", **request}
    )
    if status is not Status.QUEUED:
        update = StatusUpdate(status=status, task_id=f"kling-{external_id}")
        task, _ = store.update(external_id, lambda t: apply_update(t, update), history={"event": "status"})
    return task


def dead_letter(app: Flask, external_id: str) -> Delivery:
    """A delivery whose retries ran out, made with the notification store's own operations."""
    deliveries = app.extensions["webhook_service"].deliveries
    delivery = Delivery(
        id=f"dlv_{external_id}",
        event_id=f"evt_{external_id}",
        event_type="task.archived",
        external_task_id=external_id,
        sink=SinkKind.WEBHOOK,
        target="http://127.0.0.1:9/secret-path",
    )
    assert deliveries.create(delivery)
    failed = deliveries.record_attempt(
        delivery.id,
        delivery.id,
        Attempt(status_code=500, response="boom"),
        DeliveryStatus.FAILED,
        "exhausted",
    )
    assert failed is not None and failed.status is DeliveryStatus.FAILED
    return failed


def rows(html: str) -> list[str]:
    return re.findall(r'data-task="([^"]+)"', html)


def test_without_credentials_the_dashboard_is_open_and_says_so(client: FlaskClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "Open to anyone" in page.text
    assert client.get("/login").headers["Location"] == "/"


def test_every_page_links_to_the_api_docs_in_the_top_navigation(locked: Flask) -> None:
    client = locked.test_client()
    login(client)
    for path in ("/", "/deliveries", "/usage"):
        nav = re.search(r'<nav class="mainnav">(.*?)</nav>', client.get(path).text, re.S)
        assert nav and re.search(r'<a href="/docs"[^>]*>API docs</a>', nav[1]), path
    assert client.get("/docs").status_code == 200


def test_login_with_an_api_key_then_logout(locked: Flask) -> None:
    client = locked.test_client()
    assert client.get("/deliveries?status=all").headers["Location"] == "/login?next=/deliveries?status%3Dall"

    refused = client.post("/login", data={"credential": "wrong", "csrf_token": csrf_token(client)})
    assert refused.status_code == 401 and "not a valid API key" in refused.text

    token = csrf_token(client)
    signed = client.post("/login", data={"credential": KEY, "csrf_token": token, "next": "/deliveries"})
    assert signed.status_code == 302 and signed.headers["Location"] == "/deliveries"
    cookie = signed.headers["Set-Cookie"]
    assert "kws_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert KEY not in base64.urlsafe_b64decode(cookie.split("=", 1)[1].split(".")[1] + "==").decode("latin-1")
    page = client.get("/")
    assert page.status_code == 200 and "Open to anyone" not in page.text and "Log out" in page.text

    out = client.post("/logout", data={"csrf_token": csrf_token(client, "/logout")})
    assert out.status_code == 302 and out.headers["Location"] == "/login"
    assert client.get("/").status_code == 302


def test_login_goes_back_only_to_a_path_on_this_site(locked: Flask) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "/\t/evil.example"):
        client = locked.test_client()
        response = client.post(
            "/login", data={"credential": KEY, "csrf_token": csrf_token(client), "next": target}
        )
        assert response.headers["Location"] == "/", target


def test_a_jwt_session_ends_when_the_jwt_expires(env: dict[str, str]) -> None:
    app = create_app(
        {
            **env,
            "SERVICE_ACCESS_KEY": "ak-test",
            "SERVICE_SECRET_KEY": "sk-test-0123456789abcdef0123456789abcdef",
        }
    )
    client = app.test_client()

    def token(exp_in_s: int) -> str:
        now = int(time.time())
        return jwt.encode(
            {"iss": "ak-test", "exp": now + exp_in_s, "nbf": now - 5},
            "sk-test-0123456789abcdef0123456789abcdef",
        )

    expired = client.post("/login", data={"credential": token(-60), "csrf_token": csrf_token(client)})
    assert expired.status_code == 401 and "expired" in expired.text
    login(client, token(1800))
    assert client.get("/").status_code == 200
    with client.session_transaction() as session:
        session["operator"]["exp"] = int(time.time()) - 60
    assert client.get("/").headers["Location"].startswith("/login")


def test_removing_a_key_from_the_settings_signs_its_sessions_out(env: dict[str, str], locked: Flask) -> None:
    client = locked.test_client()
    login(client)
    cookie = client.get_cookie("kws_session")
    assert cookie is not None
    rotated = create_app({**env, "SERVICE_API_KEYS": "other-key-0123456789abcdef"}).test_client()
    rotated.set_cookie("kws_session", cookie.value)
    assert rotated.get("/").headers["Location"].startswith("/login")


def test_the_api_never_accepts_the_dashboard_session(locked: Flask) -> None:
    client = locked.test_client()
    login(client)
    add_task(locked, "cookie-1")
    assert client.get("/v1/tasks/cookie-1").status_code == 401
    assert client.get("/v1/deliveries").status_code == 401
    assert client.get("/tasks/cookie-1/videos/0").status_code == 404  # the dashboard's route: no video yet


def test_csrf_token_is_required_on_dashboard_forms_only(locked: Flask) -> None:
    client = locked.test_client()
    login(client)
    dead_letter(locked, "csrf-1")

    refused = client.post("/deliveries/dlv_csrf-1/replay")
    assert refused.status_code == 400 and "CSRF token is missing" in refused.text
    assert client.post("/deliveries/replay", data={"since": "1h", "csrf_token": "forged"}).status_code == 400
    deliveries = locked.extensions["webhook_service"].deliveries
    assert deliveries.get("dlv_csrf-1").status is DeliveryStatus.FAILED

    bearer = {"Authorization": f"Bearer {KEY}"}
    assert locked.test_client().post("/v1/deliveries/replay?since=1h", headers=bearer).status_code == 200
    assert locked.test_client().post("/callbacks/kling?token=bad", json={}).status_code == 403


def test_task_list_newest_first_with_status_filter_search_and_pages(client: FlaskClient, app: Flask) -> None:
    for n in range(30):
        add_task(app, f"list-{n:02}", Status.FAILED if n % 3 == 0 else Status.SUCCEED)

    first = client.get("/").text
    assert rows(first) == [f"list-{n:02}" for n in range(29, 4, -1)]
    older = re.search(r'href="(/\?start=25)">Older', first)
    assert older and rows(client.get(older[1]).text) == [f"list-{n:02}" for n in range(4, -1, -1)]

    failed = client.get("/?status=failed").text
    assert rows(failed) == [f"list-{n:02}" for n in range(27, -1, -3)]
    assert rows(client.get("/?q=kling-list-07").text) == ["list-07"]  # Kling's task_id, exactly
    assert rows(client.get("/?q=LIST-1").text) == [f"list-{n}" for n in range(19, 9, -1)]
    assert rows(client.get("/?q=list-1&status=failed").text) == ["list-18", "list-15", "list-12"]
    assert "No task matches" in client.get("/?q=nothing-like-it").text


def test_list_shows_the_request_and_refreshes_only_while_a_task_moves(
    client: FlaskClient, app: Flask
) -> None:
    add_task(app, "done", Status.FAILED, prompt="a calm lake at dawn " * 10, mode="pro", duration="10")
    page = client.get("/").text
    assert "data-refresh" not in page
    assert "pro" in page and "10 s" in page and "a calm lake at dawn a calm" in page and "…" in page

    add_task(app, "busy", Status.PROCESSING)
    assert 'data-refresh="2"' in client.get("/").text


def test_task_page_shows_images_as_thumbnails_from_the_archive_never_as_base64(
    client: FlaskClient, app: Flask
) -> None:
    svc = app.extensions["webhook_service"]
    picture = io.BytesIO()
    PIL.Image.linear_gradient("L").resize((640, 320)).save(picture, "PNG")
    image = base64.b64encode(picture.getvalue()).decode()
    accept(
        svc, {"image": image, "image_tail": "https://127.0.0.1:9/tail.jpg", "external_task_id": "pictures"}
    )

    page = client.get("/tasks/pictures").text
    assert image[:64] not in page and "data:image" not in page
    assert (
        '<img src="/tasks/pictures/inputs/0/thumbnail"' in page and 'href="/tasks/pictures/inputs/0"' in page
    )
    # The client's URL is a link, never an image the operator's browser would fetch from its host.
    assert 'href="https://127.0.0.1:9/tail.jpg"' in page and 'src="https://127.0.0.1:9' not in page
    csp = client.get("/tasks/pictures").headers["Content-Security-Policy"]
    assert "img-src 'self' data:;" in csp
    thumb = client.get("/tasks/pictures/inputs/0/thumbnail")
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    assert PIL.Image.open(io.BytesIO(thumb.data)).size == (320, 160)
    kept = Path(svc.settings.archive_url) / thumbnail_key(svc.store.request("pictures")["image"])
    assert kept.read_bytes() == thumb.data  # made once, then read from beside the image
    assert client.get("/tasks/pictures/inputs/0").data == picture.getvalue()
    assert client.get("/tasks/pictures/inputs/1").status_code == 404  # a URL: nothing archived

    masks = [{"mask": image, "trajectories": [{"x": 1, "y": 2}, {"x": 3, "y": 4}]}]
    body = {"image": "https://127.0.0.1:9/a.png", "static_mask": "bm90IGFuIGltYWdl", "dynamic_masks": masks}
    accept(svc, {**body, "external_task_id": "brush"})
    brush = client.get("/tasks/brush").text
    assert "not a PNG, JPEG" in brush and 'href="/tasks/brush/inputs/1" download' in brush
    assert '<img src="/tasks/brush/inputs/2/thumbnail"' in brush and "&#34;x&#34;: 3" in brush
    assert client.get("/tasks/brush/inputs/1/thumbnail").status_code == 404
    assert client.get("/tasks/brush/inputs/1").data == b"not an image"

    add_task(app, "recorded-before", image=image)  # as the service kept requests before inputs moved
    legacy = client.get("/tasks/recorded-before").text
    assert image[:64] not in legacy and "recorded before images went to the archive" in legacy
    assert client.get("/tasks/nope").status_code == 404


def test_replay_button_on_the_task_page(locked: Flask) -> None:
    client = locked.test_client()
    login(client)
    add_task(locked, "hooked")
    dead_letter(locked, "hooked")

    page = client.get("/tasks/hooked").text
    assert 'data-replay="dlv_hooked"' in page and "secret-path" not in page and "exhausted" in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
    replayed = client.post(
        "/deliveries/dlv_hooked/replay", data={"csrf_token": token, "next": "/tasks/hooked"}
    )
    assert replayed.headers["Location"] == "/tasks/hooked"
    after = client.get("/tasks/hooked").text
    assert (
        "Replaying task.archived to http://127.0.0.1:9/…" in after and 'data-replay="dlv_hooked"' not in after
    )
    delivery = locked.extensions["webhook_service"].deliveries.get("dlv_hooked")
    assert delivery.status is DeliveryStatus.PENDING and delivery.replays == 1

    again = client.post("/deliveries/dlv_hooked/replay", data={"csrf_token": token}, follow_redirects=True)
    assert "is pending: not failed or skipped" in again.text


def test_deliveries_page_lists_dead_letters_replays_since_and_shows_the_system(
    client: FlaskClient, app: Flask
) -> None:
    add_task(app, "dead-1", archive_state=None)
    dead_letter(app, "dead-1")
    page = client.get("/deliveries").text
    assert 'data-replay="dlv_dead-1"' in page and 'href="/tasks/dead-1"' in page
    assert all(f'data-queue="{name}"' in page for name in ALL_QUEUES)
    assert page.count("0 / 5</strong> slots used") == 3  # one row per resource pack: video, image, try-on
    assert all(f'data-pack="{pack}"' in page for pack in ("video", "image", "tryon"))
    assert "none</span>" in page and ">up</span>" in page

    token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
    done = client.post("/deliveries/replay", data={"since": "1h", "csrf_token": token}, follow_redirects=True)
    assert "Replaying 1 failed delivery." in done.text and "No dead letters" in done.text
    bad = client.post(
        "/deliveries/replay", data={"since": "yesterday", "csrf_token": token}, follow_redirects=True
    )
    assert "expected an ISO 8601 time or a duration" in bad.text


def test_archived_task_is_final_and_its_page_stops_refreshing(client: FlaskClient, app: Flask) -> None:
    add_task(app, "settled", Status.SUCCEED)
    store = app.extensions["webhook_service"].store

    def archived(task: Task) -> None:
        task.archive_state, task.updated_at = ArchiveState.ARCHIVED, task.updated_at - 60_000

    store.update("settled", archived)
    assert "data-refresh" not in client.get("/tasks/settled").text
    assert "data-refresh" not in client.get("/").text


def test_redis_unavailable_is_an_error_page(env: dict[str, str]) -> None:
    client = create_app({**env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}).test_client()
    page = client.get("/")
    assert page.status_code == 503 and "Redis is unavailable" in page.text
