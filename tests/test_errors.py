"""Every error a client can meet says what was wrong, in Kling's envelope, with the `errors` list where
there is a field (or the body) to point at: what a person reading it, or a program branching on it,
needs without opening the docs."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from webhook_service.web.app import create_app

KEY = "errors-test-key-0123456789abcd"
IMAGE = {"image": "https://example.com/a.jpg"}


def body_problem(answer: Any) -> tuple[str, str]:
    (problem,) = answer.json["errors"]
    assert problem["field"] == "" and problem["message"] == answer.json["message"]
    return problem["code"], answer.json["message"]


def test_an_empty_a_form_and_a_non_object_body_are_named_as_what_they_are(client: FlaskClient) -> None:
    empty = client.post("/v1/videos/image2video", data=b"", content_type="application/json")
    assert empty.status_code == 400 and empty.json["code"] == 1201
    assert body_problem(empty) == (
        "empty_body",
        "the request body is empty: send a JSON object (Content-Type: application/json)",
    )
    form = client.post("/v1/videos/image2video", data={"image": "https://example.com/a.jpg"})
    code, message = body_problem(form)
    assert code == "not_json" and "is a form (application/x-www-form-urlencoded)" in message
    broken = client.post("/v1/videos/image2video", data=b'{"image": ', content_type="application/json")
    code, message = body_problem(broken)
    assert code == "invalid_json" and message.startswith("the request body is not valid JSON: ")
    text = client.post("/v1/videos/image2video", data=b"image=a.jpg", content_type="text/plain")
    code, message = body_problem(text)
    assert code == "invalid_json"
    assert message.startswith("the request body is not valid JSON (Content-Type: text/plain): ")
    bare = client.post("/v1/videos/image2video", data=b"image=a.jpg")
    assert body_problem(bare)[1].startswith("the request body is not valid JSON (no Content-Type): ")
    array = client.post("/v1/videos/image2video", json=[IMAGE])
    assert body_problem(array) == ("not_object", "the request body must be a JSON object, not an array")


def test_a_summary_of_many_problems_says_how_many_more_there_are(client: FlaskClient) -> None:
    answer = client.post(
        "/v1/videos/image2video",
        json={"prompt": 5, "mode": "fast", "duration": 5, "aspect_ratio": "4:3", "sound": "loud"},
    )
    assert answer.status_code == 400
    problems = answer.json["errors"]
    assert len(problems) > 3
    named = [p["field"] for p in problems if f"{p['field']}: " in answer.json["message"]]
    assert named == [p["field"] for p in problems[:3]]  # the first three, in order
    assert answer.json["message"].endswith(f"; and {len(problems) - 3} more (every problem is in `errors`)")


def test_a_taken_external_task_id_points_at_the_field(client: FlaskClient) -> None:
    body = {**IMAGE, "external_task_id": "taken-1"}
    assert (
        client.post("/v1/videos/image2video", json=body, headers={"Prefer": "respond-async"}).status_code
        == 202
    )
    again = client.post("/v1/videos/image2video", json=body, headers={"Prefer": "respond-async"})
    assert again.status_code == 400
    assert again.json["errors"] == [
        {"field": "external_task_id", "code": "taken", "message": "is already used by another task"}
    ]


def test_unknown_paths_and_wrong_methods_say_so_in_the_envelope(client: FlaskClient) -> None:
    missing = client.get("/v1/videos/imagetovideo")
    assert missing.status_code == 404 and missing.json["code"] == 1203
    assert missing.json["message"] == "no such path: GET /v1/videos/imagetovideo (the API is listed at /docs)"
    wrong = client.delete("/v1/videos/image2video")
    assert wrong.status_code == 405 and wrong.json["code"] == 1201
    assert wrong.json["message"] == "DELETE is not allowed on /v1/videos/image2video: use GET or POST"
    assert "POST" in wrong.headers["Allow"]


def test_a_basic_authorization_header_is_not_called_missing(env: dict[str, str]) -> None:
    client = create_app({**env, "SERVICE_API_KEYS": KEY}).test_client()
    basic = client.get("/v1/tasks/x", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401 and basic.json["code"] == 1001
    assert basic.json["message"].startswith("Authorization header uses the 'Basic' scheme")
    assert "dXNlcjpwYXNz" not in basic.json["message"]
    none = client.get("/v1/tasks/x")
    assert none.json["message"].startswith("Authorization header is missing")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Basic dXNlcjpwYXNz", "Authorization header uses the 'Basic' scheme"),
        ("Bearer", "Authorization header has no token after 'Bearer'"),
        ("Bearer   ", "Authorization header has no token after 'Bearer'"),
        (KEY, "Authorization header is one word, not a scheme and a token"),  # the token alone
    ],
)
def test_each_malformed_authorization_header_is_named_precisely(
    env: dict[str, str], header: str, message: str
) -> None:
    client = create_app({**env, "SERVICE_API_KEYS": KEY}).test_client()
    answer = client.get("/v1/tasks/x", headers={"Authorization": header})
    assert answer.status_code == 401 and answer.json["code"] == 1001
    assert answer.json["message"] == f"{message}: send 'Authorization: Bearer <token>'"
