"""Benchmark: a quick endpoint's deliveries while a backlog waits its turn at an endpoint that hangs.

    .venv/bin/python bench/notify_backlog.py [--waiting 1500] [--probes 10] [--workers 2] [--sentinel]

On loopback: a private redis-server, `python -m workers` processes and a receiver whose `/slow` never
answers within NOTIFY_TIMEOUT_S and whose `/fast` answers at once, each a tenant's endpoint. First the
baseline: `--probes` deliveries to the quick endpoint, one at a time, with nothing waiting anywhere.
Then `--waiting` deliveries to the hanging endpoint, SETTLE_S for them to fall into waiting their turn
(one attempt at a time there), and the same probes again. A probe's latency runs from its delivery
being recorded to the receiver getting it. Prints both medians and their ratio; exits 1 when the
backlog's median is above MAX_RATIO times the baseline's (at least FLOOR_S), or a probe misses its
PROBE_DEADLINE_S. Bounded by its counts and those deadlines: a few minutes at the defaults.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Stack, add_redis_option, conditions, free_port, service_env, wait_until
from webhook_service.config import Settings
from webhook_service.domain.events import Event
from webhook_service.notify.records import Delivery
from webhook_service.notify.routing import Sink, SinkKind
from webhook_service.services import Services

TENANT = "bench"
HANG_S = 600
SETTLE_S = 15.0
PROBE_DEADLINE_S = 60.0
MAX_RATIO = 10.0
FLOOR_S = 0.1  # a baseline below it counts as this much: a few ms either way is noise, not a finding


class Receiver:
    """`/slow` hangs until the run ends; `/fast` answers at once and notes when each event came."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrived: dict[str, float] = {}
        self.ending = threading.Event()
        self._server = make_server("127.0.0.1", self.port, self._app, threaded=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if environ["PATH_INFO"] == "/slow":
            self.ending.wait(HANG_S)
        else:
            self.arrived.setdefault(json.loads(body)["data"]["probe"], time.monotonic())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    def stop(self) -> None:
        self.ending.set()
        self._server.shutdown()


def send(svc: Services, endpoint_id: str, url: str, name: str, data: dict[str, Any]) -> None:
    """Record one delivery of an event of no task to the endpoint, as a fan-out records one."""
    body = {"type": "task.submitted", "timestamp": "2026-01-01T00:00:00.000Z", "data": data}
    event = Event(f"evt_{name}", "task.submitted", "", json.dumps(body), "", TENANT)
    event = svc.deliveries.save_event(event)
    sink = Sink(SinkKind.WEBHOOK, url, client=True, endpoint=endpoint_id)
    svc.deliveries.create(Delivery.new(event, sink))


def probes(
    svc: Services, receiver: Receiver, endpoint_id: str, url: str, label: str, count: int
) -> list[float]:
    latencies = []
    for n in range(count):
        name = f"{label}-{n}"
        started = time.monotonic()
        send(svc, endpoint_id, url, name, {"probe": name})
        wait_until(partial(receiver.arrived.__contains__, name), PROBE_DEADLINE_S, f"probe {name}")
        latencies.append(receiver.arrived[name] - started)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--waiting", type=int, default=1500)
    parser.add_argument("--probes", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    add_redis_option(parser)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request would bury the figures

    receiver = Receiver()
    with tempfile.TemporaryDirectory(prefix="bench-backlog-") as tmp, Stack(Path(tmp)) as stack:
        env = service_env(
            Path(tmp),
            stack.redis(sentinel=args.sentinel),
            free_port(),
            READ_SETTINGS_FILES="false",
            NOTIFY_ALLOWED_HOSTS="127.0.0.1",
            NOTIFY_TIMEOUT_S="60",
        )
        svc = Services.build(Settings.from_env(env))
        base = f"http://127.0.0.1:{receiver.port}"
        slow, _ = svc.endpoints.create(TENANT, {"url": f"{base}/slow"})
        fast, _ = svc.endpoints.create(TENANT, {"url": f"{base}/fast"})
        stack.workers(env, args.workers)
        try:
            baseline = probes(svc, receiver, fast.id, fast.url, "baseline", args.probes)
            for n in range(args.waiting):
                send(svc, slow.id, slow.url, f"waiting-{n}", {"n": n})
            time.sleep(SETTLE_S)  # the backlog falls into waiting its turn
            backlog = probes(svc, receiver, fast.id, fast.url, "backlog", args.probes)
        finally:
            receiver.stop()

    calm, busy = statistics.median(baseline), statistics.median(backlog)
    ratio = busy / max(calm, FLOOR_S)
    print(conditions())
    print(f"quick endpoint, median of {args.probes}: {calm * 1000:.0f} ms with nothing waiting, ", end="")
    print(f"{busy * 1000:.0f} ms with {args.waiting} waiting at a hanging endpoint ", end="")
    print(f"(max {max(backlog) * 1000:.0f} ms)")
    print(f"ratio {ratio:.2f} (limit {MAX_RATIO:g}, baseline floored at {FLOOR_S * 1000:.0f} ms)")
    return 0 if ratio <= MAX_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
