"""Requests that wait on Kling share one budget per web process (SUBMIT_WAITING_MAX): synchronous
creates and identify-face, which Kling answers synchronously. Beyond it nothing waits: a create is
queued at once (202), an identify-face is answered 429 at once, so a slow Kling cannot take every
thread from Kling's callbacks and the health checks. Here Kling takes each connection and never
answers; the service gives up on it after KLING_TIMEOUT_S."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import Service, make_service
from tests.support import wait_for

FACES = {"video_url": "https://example.com/speaker.mp4"}
IDENTIFY = "/v1/videos/identify-face"


class SilentKling:
    """Accepts connections, counts them, and never answers a byte."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self._listener.close()
        for connection in self.held:
            connection.close()


@pytest.fixture
def slow_kling_service(env: dict[str, str]) -> Iterator[tuple[Service, SilentKling]]:
    kling = SilentKling()
    service, server, _ = make_service(
        env, KLING_API_BASE=kling.url, KLING_TIMEOUT_S="3", SUBMIT_WAITING_MAX="1", SUBMIT_WAIT_S="3"
    )
    yield service, kling
    service.http.close()
    server.stop()
    kling.close()


def test_identify_face_beyond_the_budget_is_answered_429_at_once(
    slow_kling_service: tuple[Service, SilentKling],
) -> None:
    service, kling = slow_kling_service
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(service.http.post, IDENTIFY, json=FACES)
        wait_for(lambda: len(kling.held) == 1, what="the first identify-face to wait on Kling")

        busy = service.http.post(IDENTIFY, json=FACES)
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "1"
        assert busy.json()["code"] == 1302 and "SUBMIT_WAITING_MAX=1" in busy.json()["message"]
        # A synchronous create shares the budget: queued at once, not held behind Kling.
        create = service.http.post(
            "/v1/videos/text2video", json={"prompt": "a heron", "external_task_id": "q"}
        )
        assert create.status_code == 202 and create.json()["data"]["task_status"] == "queued"
        assert service.http.get("/healthz").status_code == 200
        assert len(kling.held) == 1  # neither reached Kling

        assert waiting.result(timeout=30).status_code == 502  # Kling never answered it
    again = service.http.post(IDENTIFY, json=FACES)  # the place was given back
    assert again.status_code == 502 and len(kling.held) == 2
