"""One attempt at sending an event to one sink (notify/routing.py says which sinks an event goes to).

An attempt never raises for the receiver's sake: whatever happens (an
answer, a refused connection, a timeout) comes back as an `Attempt` the caller records. Every attempt
is bounded by `NOTIFY_TIMEOUT_S` in total, not per read, so a receiver that trickles its answer cannot
hold a worker longer than that.

Clients' URLs are untrusted: they go through outbound.py's SSRF guard (the address actually connected
to must be public, unless its host is in `NOTIFY_ALLOWED_HOSTS`). The operator's URLs are trusted.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple, TypeVar
from urllib.parse import unquote, urlsplit

import httpx
from standardwebhooks import Webhook

from webhook_service.config import Settings
from webhook_service.domain.clock import now_ms
from webhook_service.domain.events import Event
from webhook_service.integrations.outbound import BlockedAddress, guarded_client, tls_context
from webhook_service.notify.render import email_message, slack_message
from webhook_service.notify.retry import RETRY_AFTER_STATUSES, parse_retry_after
from webhook_service.notify.routing import Sink, SinkKind

RESPONSE_KEEP_BYTES = 1024
CONNECT_TIMEOUT_S = 5.0
USER_AGENT = "kling-webhook-service/notify"
T = TypeVar("T")


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # worth trying again later
    GONE = "gone"  # 410: the receiver says it will never want anything again
    REFUSED = "refused"  # we will not send there (blocked address, malformed URL): retrying cannot help


@dataclass
class Attempt:
    at: int = field(default_factory=now_ms)
    latency_ms: int = 0
    status_code: int | None = None
    error: str | None = None
    response: str = ""
    retry_after_s: float | None = None
    verdict: Verdict = Verdict.RETRY

    def record(self) -> dict[str, object]:
        """What is kept for the attempts list: time, status code or error, latency, the answer's start."""
        return {
            "at": self.at,
            "status_code": self.status_code,
            "error": self.error,
            "latency_ms": self.latency_ms,
            "response": self.response,
            "verdict": self.verdict.value,
        }


def attempt(sink: Sink, event: Event, settings: Settings, secrets: tuple[str, ...] = ()) -> Attempt:
    """One try at delivering `event` to `sink`, within `settings.notify_timeout_s` in all; a webhook is
    signed with each of `secrets` (`webhook-signature` holds them all, space-separated)."""
    result = Attempt()
    started = time.monotonic()
    try:
        if sink.kind is SinkKind.EMAIL:
            result.response = _within(settings.notify_timeout_s, lambda: _send_email(event, settings))
            result.status_code, result.verdict = 250, Verdict.DELIVERED
        else:
            body, headers = _http_request(sink, event, settings, secrets)
            answer = _within(settings.notify_timeout_s, lambda: _post(sink, body, headers, settings))
            result.status_code, result.response, result.retry_after_s = answer
            if 200 <= answer.status_code < 300:
                result.verdict = Verdict.DELIVERED
            elif answer.status_code == 410:
                result.verdict = Verdict.GONE
    except httpx.ConnectTimeout:  # no connection within CONNECT_TIMEOUT_S (or the bound, if shorter)
        result.error = "timeout: ConnectTimeout"
    except (TimeoutError, httpx.TimeoutException):
        # One read or write took the whole bound: what the bound reports too, whichever fired first
        # (a race that a loaded machine decides either way).
        result.error = f"timeout: no complete answer within {settings.notify_timeout_s:g} s"
    except BlockedAddress as error:
        result.error, result.verdict = f"blocked_address: {error}", Verdict.REFUSED
    except httpx.InvalidURL as error:
        result.error, result.verdict = f"bad_url: {error}", Verdict.REFUSED
    except httpx.HTTPError as error:
        result.error = f"{type(error).__name__}: {error}"
    except smtplib.SMTPResponseException as error:
        result.status_code = error.smtp_code
        result.error = f"{type(error).__name__}: {_server_said(error.smtp_error)}"
    except (smtplib.SMTPException, OSError) as error:
        result.error = f"{type(error).__name__}: {error}"
    result.latency_ms = round((time.monotonic() - started) * 1000)
    return result


def _within(seconds: float, work: Callable[[], T]) -> T:
    """Run `work` in a thread and stop waiting for it after `seconds`.

    httpx and smtplib time out per read, not per exchange. A thread left behind ends with its own
    read timeout.
    """
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as error:
            box["error"] = error

    thread = threading.Thread(target=run, name="notify-attempt", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def _http_request(
    sink: Sink, event: Event, settings: Settings, secrets: tuple[str, ...]
) -> tuple[bytes, dict[str, str]]:
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if sink.kind is SinkKind.SLACK:
        return json.dumps(slack_message(event, settings.public_base_url)).encode(), headers
    now = datetime.now(UTC)
    headers["webhook-id"] = event.id
    headers["webhook-timestamp"] = str(int(now.timestamp()))
    if secrets:
        headers["webhook-signature"] = " ".join(
            Webhook(s).sign(event.id, now, event.payload) for s in secrets
        )
    return event.payload.encode(), headers


class _Answer(NamedTuple):
    status_code: int
    head: str  # the first RESPONSE_KEEP_BYTES of the body
    retry_after_s: float | None


def _post(sink: Sink, body: bytes, headers: dict[str, str], settings: Settings) -> _Answer:
    timeout = settings.notify_timeout_s
    connect = min(CONNECT_TIMEOUT_S, timeout)
    limits = httpx.Timeout(timeout, connect=connect)
    if sink.client:
        client = guarded_client(settings.notify_allowed_hosts, limits)
    else:
        client = httpx.Client(verify=tls_context(), trust_env=False, follow_redirects=False, timeout=limits)
    url = httpx.URL(sink.target)
    if url.scheme not in ("http", "https") or not url.host:
        raise httpx.InvalidURL("only http(s) URLs with a host are called")
    with client, client.stream("POST", url, content=body, headers=headers) as response:
        head = b""
        for chunk in response.iter_bytes():
            head += chunk
            if len(head) >= RESPONSE_KEEP_BYTES:
                break
        retry_after = None
        if response.status_code in RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        text = head[:RESPONSE_KEEP_BYTES].decode("utf-8", "replace")
        return _Answer(response.status_code, text, retry_after)


def _send_email(event: Event, settings: Settings) -> str:
    """`smtps://` is TLS from the start; `smtp://` upgrades with STARTTLS whenever the server offers it."""
    url = urlsplit(settings.smtp_url)
    message = email_message(
        event, settings.public_base_url, settings.notify_email_from, settings.notify_email_to
    )
    context = ssl.create_default_context()
    timeout = settings.notify_timeout_s
    host = url.hostname or "localhost"
    if url.scheme == "smtps":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, url.port or 465, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(host, url.port or 25, timeout=timeout)
    with smtp:
        smtp.ehlo()
        if url.scheme == "smtp" and smtp.has_extn("starttls"):
            smtp.starttls(context=context)
            smtp.ehlo()
        if url.username:
            smtp.login(unquote(url.username), unquote(url.password or ""))
        refused = smtp.send_message(message)
    return f"accepted by {host}" + (f"; refused: {', '.join(refused)}" if refused else "")


def _server_said(value: bytes | str) -> str:
    """An SMTP server's reply, not Redis's (replies.py): bytes in whatever encoding the server likes,
    shown as well as they read rather than refused, since they only explain a failed attempt."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
