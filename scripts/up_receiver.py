"""A webhook receiver on loopback, where the service's signed notifications arrive while scripts/up runs.

Notifications are what most users come for, and they go from one machine to another: without a
receiver of their own, a newcomer never sees one. This one checks each delivery's Standard Webhooks
signature with the `standardwebhooks` library, as a real receiver must, and shows the event on the
console. It is registered as one of the operator's targets (NOTIFY_WEBHOOK_URLS), which the service
trusts: its SSRF guard, for clients' `callback_url`s only, has nothing to say about loopback here.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from up_console import Console

PATH = "/webhooks"


class Receiver:
    def __init__(self, port: int, secret: str, console: Console) -> None:
        self.verifier = Webhook(secret)
        self.console = console
        self._arrived: defaultdict[str, set[str]] = defaultdict(set)  # external_task_id -> event types
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_port}{PATH}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="receiver", daemon=True)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, external_task_id: str, event_type: str, timeout: float) -> bool:
        """Whether the task's `event_type` arrived, signed, within `timeout` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: event_type in self._arrived[external_task_id], timeout)

    def _received(self, body: bytes, headers: dict[str, str]) -> int:
        """The status to answer: 204 for a verified event, 400 (which the service retries) otherwise."""
        webhook_id = headers.get("webhook-id", "?")
        try:
            event: dict[str, Any] = self.verifier.verify(body, headers)
        except WebhookVerificationError as error:
            self.console.warn("webhook", f"{webhook_id}: signature check failed ({error}), answered 400")
            return 400
        external_task_id = str(event["data"]["external_task_id"])
        line = f"{event['type']:<17} {webhook_id}  signature verified  {external_task_id}"
        self.console.event("webhook", line)
        with self._changed:
            self._arrived[external_task_id].add(event["type"])
            self._changed.notify_all()
        return 204

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver._received(body, {k.lower(): v for k, v in self.headers.items()})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Every delivery is on the console already, in a line of its own."""

        return Handler
