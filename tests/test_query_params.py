"""The query parameters of the service's own routes: every problem of a query in one 400 (each with its
parameter, code and message, summarised in the message as a body's problems are), a choice that names
what was sent, and a parameter the route does not take refused with a "did you mean". The drop-in Kling
routes stay as lenient as Kling."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from webhook_service.domain.task_types import TASK_TYPES
from webhook_service.domain.tasks import Status
from webhook_service.web.app import create_app

KEY = "query-test-key-0123456789abcdef"


def refused(client: FlaskClient, url: str, method: str = "GET") -> tuple[str, list[dict[str, str]]]:
    answer = client.open(url, method=method)
    assert answer.status_code == 400, answer.get_data(as_text=True)
    body: dict[str, Any] = answer.get_json()
    assert body["code"] == 1201
    return body["message"], body["errors"]


def test_every_problem_of_a_query_comes_back_at_once(client: FlaskClient) -> None:
    message, errors = refused(client, "/v1/tasks?status=bogus&since=zzz&type=nope")
    statuses = ", ".join(s.value for s in Status)
    assert errors == [
        {"field": "status", "code": "invalid", "message": f"one of {statuses}; got 'bogus'"},
        {
            "field": "since",
            "code": "unknown_parameter",
            "message": "unknown parameter; this route takes limit, offset, status, type",
        },
        {"field": "type", "code": "invalid", "message": f"one of {', '.join(TASK_TYPES)}; got 'nope'"},
    ]
    assert message == "invalid query: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors)


def test_a_summary_of_many_problems_says_how_many_more_there_are(client: FlaskClient) -> None:
    message, errors = refused(client, "/v1/deliveries?status=gone&since=soon&offset=-1&limit=9999")
    assert [e["field"] for e in errors] == ["status", "since", "offset", "limit"]
    assert message.startswith("invalid query: status: one of ")
    assert message.endswith("; and 1 more (every problem is in `errors`)")
    assert "got 'soon'" in errors[1]["message"] and "got '9999'" in errors[3]["message"]


@pytest.mark.parametrize(
    ("url", "field", "hint"),
    [
        ("/v1/deliveries?sinse=1h", "sinse", "did you mean 'since'?"),
        ("/v1/tasks?Status=failed", "Status", "did you mean 'status'?"),  # case, '_' and '-' ignored
        (
            "/v1/events?page_size=10",
            "page_size",
            "this route takes after, limit, task_types, tenant, types, wait",
        ),
        ("/v1/usage?form=2026-01-01", "form", "did you mean 'from'?"),
        ("/v1/endpoints?limit=5", "limit", "this route takes no query parameters"),
        ("/v1/tasks/some-task?verbose=1", "verbose", "this route takes no query parameters"),
    ],
)
def test_a_parameter_the_route_does_not_take_is_refused(
    client: FlaskClient, url: str, field: str, hint: str
) -> None:
    _, errors = refused(client, url)
    assert errors == [{"field": field, "code": "unknown_parameter", "message": f"unknown parameter; {hint}"}]


def test_the_domains_own_checks_are_collected_with_the_rest(client: FlaskClient) -> None:
    _, errors = refused(client, "/v1/events?tenant=Team%20A&types=task.nope&limit=0&wait=99")
    assert [e["field"] for e in errors] == ["tenant", "types", "limit", "wait"]
    _, errors = refused(client, "/v1/usage?from=2026-13-01&to=yesterday&tenant=Team%20A")
    assert [e["field"] for e in errors] == ["from", "to", "tenant"]
    _, errors = refused(client, "/v1/deliveries/replay?status=delivered", method="POST")
    assert errors == [
        {"field": "status", "code": "invalid", "message": "one of failed, skipped; got 'delivered'"},
        {
            "field": "since",
            "code": "missing",
            "message": "required: an ISO 8601 time or a duration like 30m, 2h, 1d",
        },
    ]


def test_a_long_value_is_shown_cut_short(client: FlaskClient) -> None:
    _, errors = refused(client, "/v1/tasks?status=" + "x" * 500)
    assert errors[0]["message"].endswith("got '" + "x" * 40 + "...'")


def test_good_queries_still_answer(client: FlaskClient) -> None:
    assert client.get("/v1/tasks?status=failed&limit=5").status_code == 200
    assert client.get("/v1/deliveries?since=1h&status=failed").status_code == 200
    assert client.get("/v1/usage?from=2026-01-01&to=2026-01-31").status_code == 200
    assert client.get("/v1/endpoints").status_code == 200


def test_the_drop_in_kling_routes_stay_lenient(client: FlaskClient) -> None:
    """Kling ignores a parameter it does not know: a Kling client that sends one must not break here."""
    assert client.get("/v1/videos/image2video?pageNum=1&pageSize=5&foo=bar").status_code == 200
    assert client.get("/kling/v1/images/generations?whatever=1").status_code == 200


def test_credentials_are_checked_before_the_query(env: dict[str, str]) -> None:
    client = create_app({**env, "SERVICE_API_KEYS": KEY}).test_client()
    assert client.get("/v1/tasks?nonsense=1").status_code == 401
    authorised = client.get("/v1/tasks?nonsense=1", headers={"Authorization": f"Bearer {KEY}"})
    assert authorised.status_code == 400
