"""What the test process does on the switch: a TCP round-robin balancer in front of the web hosts (the
callback URL Kling is given), the webhook receiver, and the clients, each recording every answer.

The balancer forwards bytes and nothing else, one backend per connection in turn, as a layer-4 load
balancer does: it never retries, hides no error and checks no health, so every answer Kling's callbacks
get is the web host's own.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from standardwebhooks import Webhook

RETRY_BACKOFF_S = 0.2


class Balancer:
    """asyncio in a thread of its own; `connections` counts the connections sent to each backend."""

    def __init__(self, address: str, backends: list[tuple[str, int]]) -> None:
        self.address = address
        self.backends = backends
        self.connections: Counter[tuple[str, int]] = Counter()
        self._turn = itertools.cycle(backends)
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="balancer", daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def start(self) -> Balancer:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, self.address, 0), self._loop
        )
        self._server = started.result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        backend = next(self._turn)
        self.connections[backend] += 1
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(asyncio.open_connection(*backend), 5)
        except (OSError, TimeoutError):
            client_writer.close()  # the caller sees its connection dropped, as behind a real balancer
            return
        await asyncio.gather(
            _pipe(client_reader, upstream_writer),
            _pipe(upstream_reader, client_writer),
            return_exceptions=True,
        )

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _close(self) -> None:
        """Stop listening and end every connection still open, so none outlives the loop."""
        if self._server is not None:
            self._server.close()
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream (bounded by the connection's life), then pass the end on."""
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    finally:
        writer.close()


@dataclass
class Receipt:
    webhook_id: str
    event_type: str
    external_task_id: str
    at: float


class Receiver:
    """The operator's webhook endpoint: checks each Standard Webhooks signature, records each receipt."""

    def __init__(self, address: str, secret: str) -> None:
        self.lock = threading.Lock()
        self.receipts: list[Receipt] = []
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                try:
                    event = Webhook(secret).verify(raw, headers)
                except Exception:
                    with receiver.lock:
                        receiver.refused += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                receipt = Receipt(
                    headers["webhook-id"], event["type"], event["data"]["external_task_id"], time.time()
                )
                with receiver.lock:
                    receiver.receipts.append(receipt)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((address, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{address}:{self._server.server_port}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, name="receiver", daemon=True)
        self._thread.start()

    def snapshot(self) -> list[Receipt]:
        with self.lock:
            return list(self.receipts)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Answer:
    """One HTTP attempt of a client: when, to which web host, and its status (None: no answer)."""

    at: float
    host: int
    status: int | None
    error: str = ""


@dataclass
class Clients:
    """Clients submitting tasks round-robin over the web hosts, at a steady pace, from a few threads.

    A 503 or no answer is tried again on the next host (as behind a balancer), after a short back-off,
    up to `attempts` times within `give_up_s`. A retry that finds its `external_task_id` taken means
    an earlier attempt got through unanswered: accepted."""

    urls: list[str]
    key: str
    body: Callable[[str], dict[str, Any]]
    threads: int = 4
    per_second: float = 10.0
    attempts: int = 40
    give_up_s: float = 60.0
    answers: list[Answer] = field(default_factory=list)
    accepted: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, ids: list[str]) -> threading.Thread:
        """Submit `ids` in a background thread; returns it (join it with a timeout)."""
        thread = threading.Thread(target=self._run, args=(ids,), name="clients", daemon=True)
        thread.start()
        return thread

    def _run(self, ids: list[str]) -> None:
        started = time.monotonic()
        https = [httpx.Client(base_url=url, timeout=10, trust_env=False) for url in self.urls]
        headers = {"Authorization": f"Bearer {self.key}"}

        def submit(index: int) -> None:
            # Pacing, not waiting for anything: spreads the tasks over the disruptions.
            time.sleep(max(0.0, started + index / self.per_second - time.monotonic()))
            self._submit(https, headers, index, ids[index])

        try:
            with ThreadPoolExecutor(self.threads) as pool:
                list(pool.map(submit, range(len(ids))))
        finally:
            for http in https:
                http.close()

    def _submit(
        self, https: list[httpx.Client], headers: dict[str, str], index: int, external_id: str
    ) -> None:
        deadline = time.monotonic() + self.give_up_s
        for attempt in range(self.attempts):
            host = (index + attempt) % len(https)
            try:
                answer = https[host].post(
                    "/v1/videos/image2video", json=self.body(external_id), headers=headers
                )
            except httpx.HTTPError as error:
                self._record(Answer(time.time(), host, None, type(error).__name__))
            else:
                self._record(Answer(time.time(), host, answer.status_code))
                if answer.status_code in (200, 202) or (attempt and _taken(answer)):
                    with self.lock:
                        self.accepted[external_id] = answer.status_code
                    return
                if answer.status_code != 503:
                    with self.lock:
                        self.failed[external_id] = f"{answer.status_code}: {answer.text[:300]}"
                    return
            if time.monotonic() > deadline:
                break
            time.sleep(RETRY_BACKOFF_S)  # the client's back-off between tries, as a polite client has
        with self.lock:
            self.failed[external_id] = "gave up"

    def _record(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)


def _taken(answer: httpx.Response) -> bool:
    try:
        errors = answer.json().get("errors") or []
    except ValueError:
        return False
    return answer.status_code == 400 and any(e.get("code") == "taken" for e in errors)
