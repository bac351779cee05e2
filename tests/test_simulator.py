"""The Kling simulator, exercised over real loopback HTTP like the service will use it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from standardwebhooks import Webhook
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from kling_simulator import SimulatorServer

SAMPLE = Path(__file__).parent.parent / "kling_simulator" / "static" / "sample.mp4"
AK, SK = "access-key", "secret-key-at-least-thirty-two-bytes"
SECRET = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="
FAST = {"steps": [{"status": "processing", "delay": 0.0}, {"status": "succeed", "delay": 0.1}]}


def wait_for(predicate: Callable[[], Any], timeout: float = 3.0) -> Any:
    """Poll until `predicate()` is truthy, returning its value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.01)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class Receiver:
    """A tiny real HTTP endpoint recording what the simulator calls back."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self._lock:
            self.requests.append({"headers": dict(request.headers), "body": request.get_data()})
        return Response("ok")(environ, start_response)

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.requests)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.received()]

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(token="t") as server:
        yield server


@pytest.fixture
def client(sim: SimulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, headers={"Authorization": "Bearer t"}, trust_env=False) as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def create(client: httpx.Client, prefix: str = "", **fields: Any) -> httpx.Response:
    return client.post(
        f"{prefix}/v1/videos/image2video", json={"image": "https://example.com/a.jpg", **fields}
    )


def status_of(client: httpx.Client, task_id: str) -> str:
    return client.get(f"/v1/videos/image2video/{task_id}").json()["data"]["task_status"]


@pytest.mark.parametrize("prefix", ["", "/kling"])
def test_create_query_and_list(sim: SimulatorServer, client: httpx.Client, prefix: str) -> None:
    sim.state.set_default(FAST)
    first = create(client, prefix, external_task_id="ext-1", duration="10", mode="pro")
    assert first.status_code == 200
    body = first.json()
    assert body["code"] == 0 and body["message"] == "SUCCEED" and body["request_id"]
    data = body["data"]
    assert data["task_status"] == "submitted" and data["task_info"] == {"external_task_id": "ext-1"}
    assert data["task_id"].isdigit() and len(data["task_id"]) >= 18
    assert isinstance(data["created_at"], int) and data["created_at"] > 1_600_000_000_000
    task_id = data["task_id"]

    query = f"{prefix}/v1/videos/image2video"
    wait_for(lambda: client.get(f"{query}/{task_id}").json()["data"]["task_status"] == "succeed")
    by_ext = client.get(f"{query}/ext-1").json()["data"]
    assert by_ext == client.get(f"{query}/{task_id}").json()["data"]
    assert by_ext["task_id"] == task_id and by_ext["final_unit_deduction"] == "4"
    assert by_ext["watermark_info"] == {"enabled": False} and by_ext["updated_at"] >= by_ext["created_at"]
    [video] = by_ext["task_result"]["videos"]
    assert video["duration"] == "10" and "watermark_url" not in video
    assert video["url"].startswith(f"{sim.url}/files/{task_id}/")

    second = create(client, prefix, external_task_id="ext-2").json()["data"]["task_id"]
    listed = client.get(query, params={"pageNum": 1, "pageSize": 30}).json()["data"]
    assert [t["task_id"] for t in listed] == [second, task_id]
    page2 = client.get(query, params={"pageNum": 2, "pageSize": 1}).json()["data"]
    assert [t["task_id"] for t in page2] == [task_id]
    for params in ({"pageNum": 0}, {"pageNum": 1001}, {"pageSize": 0}, {"pageSize": 501}, {"pageNum": "x"}):
        bad = client.get(query, params=params)
        assert (bad.status_code, bad.json()["code"]) == (400, 1201)

    missing = client.get(f"{query}/nope")
    assert (missing.status_code, missing.json()["code"]) == (404, 1203)
    [t1, t2] = sim.state.tasks()
    assert t1["request"]["mode"] == "pro" and t1["headers"]["Authorization"] == "Bearer t"
    assert t2["external_task_id"] == "ext-2"


def test_create_validation(client: httpx.Client) -> None:
    no_image = client.post("/v1/videos/image2video", json={"prompt": "x"})
    assert (no_image.status_code, no_image.json()["code"]) == (400, 1201)
    not_json = client.post(
        "/v1/videos/image2video", content=b"[", headers={"Content-Type": "application/json"}
    )
    assert (not_json.status_code, not_json.json()["code"]) == (400, 1200)
    assert create(client, external_task_id="dup").status_code == 200
    dup = create(client, external_task_id="dup")
    assert (dup.status_code, dup.json()["code"]) == (400, 1201)


def test_static_token_auth(sim: SimulatorServer) -> None:
    with httpx.Client(base_url=sim.url, trust_env=False) as anon:
        for headers, code in (
            ({}, 1001),
            ({"Authorization": "Bearer"}, 1001),
            ({"Authorization": "Bearer x"}, 1002),
        ):
            for path in ("/v1/videos/image2video", "/kling/v1/videos/image2video/any"):
                response = anon.get(path, headers=headers)
                assert response.status_code == 401
                assert response.json()["code"] == code and response.json()["request_id"]


def test_jwt_auth() -> None:
    def token(secret: str = SK, iss: str = AK, **offsets: int) -> str:
        now = int(time.time())
        claims = {"iss": iss, "exp": now + offsets.get("exp", 1800), "nbf": now + offsets.get("nbf", -5)}
        return jwt.encode(claims, secret, algorithm="HS256", headers={"typ": "JWT"})

    with SimulatorServer(access_key=AK, secret_key=SK) as sim, httpx.Client(trust_env=False) as c:
        url = f"{sim.url}/v1/videos/image2video"

        def code(bearer: str) -> int:
            response = c.post(url, json={"image": "x"}, headers={"Authorization": f"Bearer {bearer}"})
            return response.json()["code"]

        assert code(token()) == 0
        assert code(token(exp=-10)) == 1004
        assert code(token(nbf=60)) == 1003
        assert code(token(secret=SK.upper())) == 1002
        assert code(token(iss="someone-else")) == 1002
        assert code("not-a-jwt") == 1002


@pytest.mark.parametrize("prefix", ["", "/kling"])
def test_image_generations_make_n_real_pngs(
    sim: SimulatorServer, client: httpx.Client, receiver: Receiver, prefix: str
) -> None:
    sim.state.set_default(FAST)
    path = f"{prefix}/v1/images/generations"
    body = {"prompt": "a kite", "n": 3, "external_task_id": "img-1", "callback_url": receiver.url}
    task_id = client.post(path, json=body).json()["data"]["task_id"]
    done = wait_for(
        lambda: (d := client.get(f"{path}/img-1").json()["data"])["task_status"] == "succeed" and d
    )
    assert done["task_id"] == task_id and done["final_unit_deduction"] == "3"
    images = done["task_result"]["images"]
    assert [image["index"] for image in images] == [0, 1, 2] and "videos" not in done["task_result"]
    for image in images:
        served = client.get(image["url"])
        assert served.headers["content-type"] == "image/png"
        assert served.content.startswith(b"\x89PNG\r\n\x1a\n") and served.content.endswith(b"IEND\xaeB`\x82")
    wait_for(lambda: len(receiver.received()) == 2)
    assert receiver.bodies()[1]["task_result"] == {"images": images}
    assert [t["task_id"] for t in client.get(path).json()["data"]] == [task_id]
    assert client.get("/v1/videos/image2video").json()["data"] == []  # each type at its own path
    assert client.get(f"/v1/videos/image2video/{task_id}").status_code == 404
    assert client.post(path, json={"n": 2}).json()["code"] == 1201  # no prompt


def test_legacy_callbacks(sim: SimulatorServer, client: httpx.Client, receiver: Receiver) -> None:
    sim.state.set_default(FAST)
    task_id = create(client, external_task_id="cb-1", callback_url=receiver.url).json()["data"]["task_id"]
    wait_for(lambda: len(receiver.received()) == 2)
    processing, succeed = receiver.bodies()
    assert processing["task_status"] == "processing" and "task_result" not in processing
    assert succeed["task_status"] == "succeed" and succeed["task_id"] == task_id
    assert succeed["task_info"] == {"external_task_id": "cb-1"}
    assert set(succeed) >= {"task_status_msg", "created_at", "updated_at", "final_unit_deduction"}
    assert succeed["task_result"]["videos"][0]["url"].endswith(".mp4")
    assert "webhook-signature" not in receiver.received()[0]["headers"]
    assert receiver.received()[0]["headers"]["Content-Type"] == "application/json"
    log = wait_for(lambda: len(sim.state.callbacks()) == 2 and sim.state.callbacks())
    assert [entry["status_code"] for entry in log] == [200, 200]
    assert log[1]["url"] == receiver.url and log[1]["body"] == receiver.received()[1]["body"]


def test_new_shape_signed_with_watermark(
    sim: SimulatorServer, client: httpx.Client, receiver: Receiver
) -> None:
    sim.state.set_default(FAST)
    sim.state.set_scenario("new-1", {"shape": "new", "webhook_secret": SECRET, "videos": 2})
    create(client, external_task_id="new-1", callback_url=receiver.url, watermark_info={"enabled": True})
    wait_for(lambda: len(receiver.received()) == 2)
    for request in receiver.received():
        Webhook(SECRET).verify(request["body"], request["headers"])
    done = receiver.bodies()[1]
    assert done["status"] == "succeeded" and done["external_id"] == "new-1" and done["message"] == ""
    assert set(done) >= {"id", "create_time", "update_time"}
    assert len(done["outputs"]) == 2
    assert all(
        o["type"] == "video" and o["watermark_url"].endswith("_watermark.mp4") for o in done["outputs"]
    )


def test_failed_dropped_and_duplicated(
    sim: SimulatorServer, client: httpx.Client, receiver: Receiver
) -> None:
    steps = [
        {"status": "processing", "delay": 0.0, "send": False},
        {"status": "failed", "delay": 0.05, "copies": 3, "message": "content policy"},
    ]
    sim.state.set_default({"steps": steps})
    task_id = create(client, callback_url=receiver.url).json()["data"]["task_id"]
    wait_for(lambda: len(receiver.received()) == 3)
    bodies = receiver.bodies()
    assert all(b == bodies[0] for b in bodies) and bodies[0]["task_status"] == "failed"
    assert bodies[0]["task_status_msg"] == "content policy"
    queried = client.get(f"/v1/videos/image2video/{task_id}").json()["data"]
    assert queried["task_status"] == "failed" and queried["task_status_msg"] == "content policy"


def test_out_of_order(sim: SimulatorServer, client: httpx.Client, receiver: Receiver) -> None:
    steps = [{"status": "processing", "delay": 0.3}, {"status": "succeed", "delay": 0.05}]
    sim.state.set_default({"steps": steps})
    task_id = create(client, callback_url=receiver.url).json()["data"]["task_id"]
    wait_for(lambda: len(receiver.received()) == 2)
    assert [b["task_status"] for b in receiver.bodies()] == ["succeed", "processing"]
    assert status_of(client, task_id) == "succeed"


def test_callback_before_response(sim: SimulatorServer, client: httpx.Client, receiver: Receiver) -> None:
    sim.state.set_default({"before_response": True, **FAST})
    response = create(client, callback_url=receiver.url)
    assert response.status_code == 200
    # Already there: no waiting. (The succeed callback, 0.1 s later, may have come too on a busy machine.)
    early = receiver.bodies()[0]
    assert early["task_status"] == "processing" and early["task_id"] == response.json()["data"]["task_id"]
    wait_for(lambda: len(receiver.received()) == 2)


def test_create_error(sim: SimulatorServer, client: httpx.Client, receiver: Receiver) -> None:
    sim.state.set_scenario("busy", {"create_error": {"http": 429, "code": 1303, "message": "busy"}})
    refused = create(client, external_task_id="busy")
    assert (refused.status_code, refused.json()["code"], refused.json()["message"]) == (429, 1303, "busy")
    assert sim.state.tasks() == []
    assert client.get("/v1/videos/image2video/busy").status_code == 404

    sim.state.set_scenario(
        "late", {**FAST, "create_error": {"http": 500, "code": 5000, "after_create": True}}
    )
    failed = create(client, external_task_id="late", callback_url=receiver.url)
    assert (failed.status_code, failed.json()["code"]) == (500, 5000)
    wait_for(lambda: status_of(client, "late") == "succeed")
    wait_for(lambda: len(receiver.received()) == 2)


def test_max_open(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.state.set_default({"max_open": 2, "steps": [{"status": "succeed", "delay": 0.5}]})
    first = create(client).json()["data"]["task_id"]
    assert create(client).status_code == 200
    over = create(client)
    assert (over.status_code, over.json()["code"]) == (429, 1303)
    assert len(sim.state.tasks()) == 2
    wait_for(lambda: status_of(client, first) == "succeed")
    assert create(client).status_code == 200
    assert sim.state.max_open_seen == 2


def test_file_download_with_range(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.state.set_default({"steps": [{"status": "succeed", "delay": 0}]})
    task_id = create(client, watermark_info={"enabled": True}).json()["data"]["task_id"]
    [video] = client.get(f"/v1/videos/image2video/{task_id}").json()["data"]["task_result"]["videos"]
    sample = SAMPLE.read_bytes()
    assert sample[4:8] == b"ftyp" and len(sample) < 100_000
    with httpx.Client(trust_env=False) as anon:
        partial = anon.get(video["url"], headers={"Range": "bytes=10-109"})
        assert partial.status_code == 206 and partial.content == sample[10:110]
        assert partial.headers["Content-Range"] == f"bytes 10-109/{len(sample)}"
        full = anon.get(video["watermark_url"])
        assert full.status_code == 200 and full.content == sample
        assert full.headers["Content-Type"] == "video/mp4"
        assert anon.get(f"{sim.url}/files/{task_id}/unknown.mp4").status_code == 404


def test_control_api_and_reset(sim: SimulatorServer, receiver: Receiver) -> None:
    with httpx.Client(base_url=sim.url, trust_env=False) as c:
        assert c.put("/_sim/default", json={"steps": [{"status": "done"}]}).status_code == 400
        assert c.put("/_sim/default", json={"stesp": []}).status_code == 400
        assert c.put("/_sim/default", json=FAST).status_code == 200
        late = {"steps": [{"status": "succeed", "delay": 30}]}
        assert c.put("/_sim/scenarios/later", json=late).status_code == 200
        auth = {"Authorization": "Bearer t"}
        c.post("/v1/videos/image2video", json={"image": "x", "callback_url": receiver.url}, headers=auth)
        wait_for(lambda: len(c.get("/_sim/callbacks").json()) == 2)
        [entry, _] = c.get("/_sim/callbacks").json()
        assert json.loads(entry["body"])["task_status"] == "processing" and entry["status_code"] == 200
        body = {"image": "x", "external_task_id": "later", "callback_url": receiver.url}
        c.post("/v1/videos/image2video", json=body, headers=auth)
        assert [t["status"] for t in c.get("/_sim/tasks").json()] == ["succeed", "submitted"]
        assert sim.state.pending_callbacks() == 1
        assert c.post("/_sim/reset").status_code == 200
    assert sim.state.tasks() == [] and sim.state.callbacks() == [] and sim.state.pending_callbacks() == 0


def test_shutdown_is_quick_with_pending_callbacks(receiver: Receiver) -> None:
    sim = SimulatorServer().start()
    sim.state.set_default({"steps": [{"status": "succeed", "delay": 60}]})
    httpx.post(
        f"{sim.url}/v1/videos/image2video", json={"image": "x", "callback_url": receiver.url}, trust_env=False
    )
    started = time.monotonic()
    sim.stop()
    assert time.monotonic() - started < 30  # did not wait out the 60 s callback (a loose bound: shared CPUs)
    assert receiver.received() == []


def test_command_line() -> None:
    command = [sys.executable, "-m", "kling_simulator", "--port", "0", "--token", "t", "--quiet"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().split("listening on ", 1)[1].split()[0]
            response = httpx.get(
                f"{url}/kling/v1/videos/image2video", headers={"Authorization": "Bearer t"}, trust_env=False
            )
            assert (response.json()["code"], response.json()["data"]) == (0, [])
        finally:
            process.terminate()
        assert process.wait(timeout=5) == 0
