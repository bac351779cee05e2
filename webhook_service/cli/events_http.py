"""Following a tenant's events over the service's HTTP API with a client key, one line of JSON per event:
what a pipeline runs (`python -m webhook_service.cli.events_http --url https://kws.example.com`), and
`flask events tail --url` beside the service.

`flask events tail` without `--url` reads Redis directly: it needs the service's whole configuration
(SECRET_KEY, REDIS_URL) and reads any tenant's log, an operator's tool. This needs only the service's URL
and a client key, and sees what that key may see: its own tenant's events. It long-polls `GET
/v1/events` from the last cursor it got, so a pause of the service (a restart, a deploy) costs no event:
it waits and goes on from there. When the service has no thread to wait in (its waiting budget), it
comes back after the `retry_after_ms` it is told, never at once. The key may come from KWS_API_KEY, out
of `ps`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import click
import httpx

from webhook_service.cli.common import EXIT_FAILED, EXIT_UNAVAILABLE, EXIT_USAGE, CommandFailed

KEY_VARIABLE = "KWS_API_KEY"
PAGE = 500
WAIT_S = 30  # the longest long-poll the API allows
BUSY_PAUSE_S = 5.0  # when the service cannot wait and does not say for how long
UNREACHABLE_PAUSE_S = (1.0, 2.0, 5.0, 10.0)  # between tries while the service does not answer
OPTIONS = {"after": "--after", "types": "--types", "tenant": "--tenant"}  # a 400's field, as an option


class Idle(Exception):
    """No event for as long as the caller would wait (`--until-idle`)."""


def follow(
    http: httpx.Client,
    *,
    after: str | None,
    types: str | None,
    tenant: str | None,
    until_idle_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[dict[str, Any]]:
    """The events after `after` (None: from the oldest kept), as they come, for ever or until
    `until_idle_s` pass without one (then Idle). `http` carries the service's URL and the key."""
    cursor, idle_since, failures, problem = after, time.monotonic(), 0, ""
    while True:
        waited_s = time.monotonic() - idle_since
        if until_idle_s is not None and waited_s >= until_idle_s and failures:
            raise CommandFailed(f"the service is unavailable ({problem})", EXIT_UNAVAILABLE)
        if until_idle_s is not None and waited_s >= until_idle_s:
            raise Idle
        wait = WAIT_S if until_idle_s is None else min(WAIT_S, max(1, math.ceil(until_idle_s - waited_s)))
        params = {"wait": wait, "limit": PAGE, "after": cursor, "types": types, "tenant": tenant}
        try:
            answer = http.get("/v1/events", params={k: v for k, v in params.items() if v is not None})
        except httpx.TransportError as error:
            failures, problem = failures + 1, f"{type(error).__name__}: {error}"
            _pause(problem, failures, sleep)
            continue
        if answer.status_code >= 500 or answer.status_code == 429:
            failures, problem = failures + 1, f"HTTP {answer.status_code}"
            _pause(problem, failures, sleep, answer.headers.get("Retry-After", ""))
            continue
        failures = 0
        page = _page(answer)
        yield from page["events"]
        cursor = page["next_cursor"]
        if page["events"]:
            idle_since = time.monotonic()
        elif not page["waited"] and not page["has_more"]:
            sleep((page.get("retry_after_ms") or BUSY_PAUSE_S * 1000) / 1000)


def _page(answer: httpx.Response) -> dict[str, Any]:
    """The page of a 200; a refusal as the option it names, or the service's own words."""
    try:
        body: dict[str, Any] = answer.json()
    except ValueError:
        not_json = f"the service answered HTTP {answer.status_code}, not JSON: is --url the service's?"
        raise CommandFailed(not_json, EXIT_FAILED) from None
    if answer.status_code == 200:
        page: dict[str, Any] = body["data"]
        return page
    message = body.get("message") or f"HTTP {answer.status_code}"
    if answer.status_code == 400:
        named = [OPTIONS.get(e.get("field", ""), e.get("field", "")) for e in body.get("errors") or []]
        raise CommandFailed(f"{', '.join(named) or 'request'}: {message}", EXIT_USAGE)
    raise CommandFailed(f"the service refused (HTTP {answer.status_code}): {message}", EXIT_FAILED)


def _pause(why: str, failures: int, sleep: Callable[[float], None], retry_after: str = "") -> None:
    """Wait before trying again from the same cursor: longer after each failure in a row, and at least
    what a `Retry-After` asks."""
    pause = UNREACHABLE_PAUSE_S[min(failures, len(UNREACHABLE_PAUSE_S)) - 1]
    pause = max(pause, float(retry_after)) if retry_after.isdigit() else pause
    click.echo(f"the service is unavailable ({why}): trying again in {pause:g} s", err=True)
    sleep(pause)


def tail_over_http(
    url: str,
    key: str | None,
    *,
    tenant: str | None,
    types: str | None,
    after: str | None,
    count: int | None,
    until_idle: float | None,
) -> None:
    """Print each event as a line of JSON until `count` events, `until_idle` seconds without one, or
    Ctrl-C."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    timeout = httpx.Timeout(WAIT_S + 15, connect=10)
    shown = 0
    try:
        with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout) as http:
            for event in follow(http, after=after, types=types, tenant=tenant, until_idle_s=until_idle):
                click.echo(json.dumps(event, ensure_ascii=False))
                shown += 1
                if shown == count:
                    return
    except Idle:
        return
    except httpx.InvalidURL as error:
        raise CommandFailed(f"--url: {error}", EXIT_USAGE) from None
    except KeyboardInterrupt:
        return  # Ctrl-C is how a tail ends: not an error


def url_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--url", help="The service's base URL: follow its HTTP API with a client key, not Redis."
    )(command)


def key_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--key",
        envvar=KEY_VARIABLE,
        show_envvar=True,
        help=f"A client key, with --url (better from {KEY_VARIABLE}: a command line shows in ps).",
    )(command)


def types_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """--types, given once with a comma-separated list or several times (each adds its types)."""
    return click.option(
        "--types",
        multiple=True,
        help="Event types, comma-separated or the option repeated: --types task.failed,task.archived, or "
        "--types task.failed --types task.archived (default: all).",
    )(command)


def joined(types: tuple[str, ...]) -> str | None:
    """Every --types given, as one comma-separated list (None: every type)."""
    return ",".join(types) or None


def stop_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--count and --until-idle: when a tail ends by itself."""
    command = click.option(
        "--until-idle",
        type=click.FloatRange(min=0, min_open=True),
        help="Stop after this many seconds without an event.",
    )(command)
    return click.option("--count", type=click.IntRange(min=1), help="Stop after this many events.")(command)


@click.command("tail")
@url_option
@key_option
@click.option("--tenant", help="Another tenant's log: an admin's key only (default: the key's own).")
@types_option
@click.option("--after", help="Start after this cursor, e.g. the last line's (default: the oldest kept).")
@stop_options
def main(
    url: str | None,
    key: str | None,
    tenant: str | None,
    types: tuple[str, ...],
    after: str | None,
    count: int | None,
    until_idle: float | None,
) -> None:
    """A tenant's events as they come, one line of JSON each (as GET /v1/events shows them)."""
    if not url:
        raise CommandFailed("--url: the service's base URL is needed", EXIT_USAGE)
    tail_over_http(
        url, key, tenant=tenant, types=joined(types), after=after, count=count, until_idle=until_idle
    )


if __name__ == "__main__":
    main(prog_name="python -m webhook_service.cli.events_http")
