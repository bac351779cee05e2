"""A small synchronous client for Kling's task endpoints: create, query and list, at the path of the
task's type (domain/task_types.py knows the paths; this client only speaks HTTP). Kling's unified API
lives at the root (``/text-to-video/kling-3.0``, ``/tasks``), the /v1 API under ``/v1``: a call to a path
outside ``/v1`` carries the unified API's key (KLING_API_KEY) when one is set, the /v1 credentials
(KLING_API_TOKEN, or the AK/SK JWT) otherwise.

One `KlingClient` per process: `get_client()` builds it lazily and builds a new one in a forked child
(an RQ work horse, a gunicorn worker), because an httpx connection pool shared across a fork mixes up
the two processes' sockets.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from webhook_service.config import Settings
from webhook_service.integrations import metrics
from webhook_service.integrations.kling.errors import (
    KlingAuthError,
    KlingError,
    KlingTransportError,
    error_for,
)

JWT_LIFETIME_S = 1800
JWT_RESIGN_MARGIN_S = 300


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0
    total: float = 30.0

    def httpx(self) -> httpx.Timeout:
        return httpx.Timeout(self.total, connect=self.connect)


class JwtSigner:
    """Kling's AK/SK scheme: an HS256 JWT with iss = access key, re-signed well before it expires."""

    def __init__(self, access_key: str, secret_key: str) -> None:
        self._access_key = access_key
        self._secret_key = secret_key
        self._token = ""
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def token(self, *, force: bool = False) -> str:
        with self._lock:
            now = time.time()
            if force or now > self._expires_at - JWT_RESIGN_MARGIN_S:
                self._expires_at = now + JWT_LIFETIME_S
                claims = {"iss": self._access_key, "exp": int(self._expires_at), "nbf": int(now) - 5}
                self._token = jwt.encode(claims, self._secret_key, algorithm="HS256", headers={"typ": "JWT"})
            return self._token


class KlingClient:
    def __init__(
        self,
        base_url: str,
        *,
        api_token: str = "",
        api_key: str = "",
        signer: JwtSigner | None = None,
        timeouts: Timeouts | None = None,
        transport: httpx.BaseTransport | None = None,
        deadline: float | None = None,
    ) -> None:
        """`deadline` (a `time.monotonic()` instant) cuts every request short at it, whatever is left of
        the timeouts and however Kling answers: a command with its own --timeout makes several calls (a
        create, then a lookup when the create's fate is unknown), and each getting the whole timeout
        doubled the wait. Without one, the timeouts alone bound a request, as httpx applies them."""
        self._api_token = api_token
        self._deadline = deadline
        self._api_key = api_key
        self._signer = signer
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=(timeouts or Timeouts()).httpx(),
            transport=transport,
            headers={"Content-Type": "application/json", "User-Agent": "kling-webhook-service"},
        )

    @classmethod
    def from_settings(cls, settings: Settings, deadline: float | None = None) -> KlingClient:
        signer = (
            JwtSigner(settings.kling_access_key, settings.kling_secret_key)
            if settings.kling_access_key
            else None
        )
        return cls(
            settings.kling_api_base,
            api_token=settings.kling_api_token,
            api_key=settings.kling_api_key,
            signer=signer,
            timeouts=Timeouts(
                connect=min(Timeouts.connect, settings.kling_timeout_s), total=settings.kling_timeout_s
            ),
            deadline=deadline,
        )

    def close(self) -> None:
        self._http.close()

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Submit a task at its type's `path`; returns Kling's `data` (task_id, task_status, times)."""
        with _observed("create"):
            data: dict[str, Any] = self._call("POST", path, json=body)
            return data

    def query(self, item_path: str) -> dict[str, Any]:
        """One task, at its type's path followed by its (URL-encoded) task_id or external_task_id."""
        with _observed("query"):
            data: dict[str, Any] = self._call("GET", item_path)
            return data

    def list(self, path: str, page_num: int = 1, page_size: int = 30) -> list[dict[str, Any]]:
        """One page of the tasks of the type at `path`, newest first."""
        with _observed("list"):
            tasks: list[dict[str, Any]] = self._call(
                "GET", path, params={"pageNum": page_num, "pageSize": page_size}
            )
            return tasks

    def list_by_cursor(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One page of the unified API's list (`POST /tasks`, `body` its window, cursor, limit and
        filters): Kling's `data`, `{result, count, next_cursor, has_more}`."""
        with _observed("list"):
            page: dict[str, Any] = self._call("POST", path, json=body)
            return page

    def answer(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A synchronous endpoint (identify-face, which makes no task): Kling's whole envelope, as it
        answered (its request_id included), when the code is 0; otherwise the same errors as any call."""
        with _observed(path.rsplit("/", 1)[-1]):
            envelope: dict[str, Any] = self._call("POST", path, json=body, whole=True)
            return envelope

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return self._send(method, path, force_resign=False, **kwargs)
        except KlingAuthError as error:
            if not (error.retryable and self._signer):
                raise
            return self._send(method, path, force_resign=True, **kwargs)

    def _send(self, method: str, path: str, *, force_resign: bool, whole: bool = False, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self._bearer(force_resign, path)}"}
        try:
            if self._deadline is None:
                response = self._http.request(method, path, headers=headers, **kwargs)
            else:
                kwargs["timeout"] = self._time_left()  # each read no longer than what is left, too
                response = self._by_deadline(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as error:
            raise KlingTransportError(f"{type(error).__name__}: {error}") from error
        try:
            envelope = response.json()
        except ValueError:
            raise KlingTransportError(
                f"Kling answered HTTP {response.status_code} without JSON", http_status=response.status_code
            ) from None
        if not isinstance(envelope, dict):
            raise KlingTransportError(
                "Kling answered JSON that is not an object", http_status=response.status_code
            )
        code = envelope.get("code")
        request_id = envelope.get("request_id")
        if code == 0 and response.is_success:
            return envelope if whole else envelope.get("data")
        message = str(envelope.get("message") or f"HTTP {response.status_code}")
        raise error_for(response.status_code, code if isinstance(code, int) else None, message, request_id)

    def _by_deadline(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The request, given up at the deadline whatever Kling does. httpx's timeouts bound each read,
        not the request: a Kling (or a gateway) that sends its answer a line at a time restarts the read
        timeout with every line, and a 3 s limit became a minute. So the request runs on a thread of
        its own and the caller waits for it until the deadline only. Then the client is closed: its
        socket goes, and the abandoned request ends at its next read. Every later request of this
        client is past the deadline and refused before it is sent."""
        assert self._deadline is not None
        answer: Future[httpx.Response] = Future()

        def send() -> None:
            try:
                answer.set_result(self._http.request(method, path, **kwargs))
            except BaseException as error:  # handed to the caller, which raises it
                answer.set_exception(error)

        threading.Thread(target=send, name="kling-request", daemon=True).start()
        try:
            return answer.result(timeout=max(0.0, self._deadline - time.monotonic()))
        except TimeoutError:
            self._http.close()
            raise KlingTransportError("no whole answer from Kling by the deadline") from None

    def _time_left(self) -> httpx.Timeout:
        assert self._deadline is not None
        left = self._deadline - time.monotonic()
        if left <= 0:  # nothing was sent: Kling cannot have created anything
            raise KlingTransportError("the deadline passed before the request was sent")
        configured = self._http.timeout
        return httpx.Timeout(
            min(left, configured.read or left),
            connect=min(left, configured.connect or left),
            write=min(left, configured.write or left),
            pool=min(left, configured.pool or left),
        )

    def _bearer(self, force_resign: bool, path: str) -> str:
        if self._api_key and not path.startswith("/v1/"):
            return self._api_key  # the unified API's
        return self._signer.token(force=force_resign) if self._signer else self._api_token


class ClientPerProcess:
    """Hands out one KlingClient per process, built on first use and again after a fork."""

    def __init__(self, settings: Settings, deadline: float | None = None) -> None:
        self._settings = settings
        self._deadline = deadline
        self._client: KlingClient | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def get(self) -> KlingClient:
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client = KlingClient.from_settings(self._settings, self._deadline)
                self._pid = os.getpid()
            return self._client


@contextmanager
def _observed(operation: str) -> Iterator[None]:
    """Time one call to Kling for the metrics, with Kling's answer code."""
    started, code = time.perf_counter(), "0"
    try:
        yield
    except KlingError as error:
        code = str(error.code) if error.code is not None else "transport"
        raise
    finally:
        metrics.upstream_called(operation, time.perf_counter() - started, code)
