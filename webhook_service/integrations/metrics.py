"""Prometheus metrics: what the service counts, the helpers the code calls, and the counted part of a
scrape.

The metrics live here and the rest of the code only calls a helper at the point where something
happened, so instrumentation never mixes with the logic it observes. Counters and histograms are
per process; with `PROMETHEUS_MULTIPROC_DIR` set (gunicorn's workers, the RQ workers) each process
writes them to files in that directory and a scrape adds them up. Without it they stay in memory,
which is what tests and a single dev process want. The gauges (open and queued tasks, RQ queues, dead
letters) are not kept anywhere: they are read from Redis at scrape time (domain/gauges.py, which knows
the queues and packs this module must not).

Counters about a tenant's tasks carry a `tenant` label (`tenant_label`); a scrape by a tenant's own
client key shows only the series labelled with that tenant (`counted(tenant=...)`). The series without a
tenant (submissions, downloads, Kling's latency, refused callbacks) are the account's and every tenant's
together: another tenant's work moves them, so they are the operator's (an admin's key, or a scrape
METRICS_PUBLIC lets in).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client import values as prometheus_values
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from webhook_service.tenant_names import valid_name

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
_horse_of: int | None = None


def _file_owner() -> str | int:
    """Whose metric files this process writes: its own, or in an RQ work horse its worker's (below)."""
    return f"{_horse_of}job" if _horse_of is not None else os.getpid()


if MULTIPROCESS_DIR:  # before any metric exists: the value class is chosen when a metric is created
    os.makedirs(MULTIPROCESS_DIR, exist_ok=True)
    prometheus_values.ValueClass = prometheus_values.MultiProcessValue(process_identifier=_file_owner)

CALLBACKS = Counter(
    "kws_callbacks",
    "Kling callbacks received, by body shape (legacy, newer, unknown), outcome: applied, duplicate, "
    "stale, or why it was refused (bad_token, bad_signature, malformed, too_large, conflict, unknown_task, "
    "unavailable), and the task's tenant (empty for a refused callback)",
    ["shape", "outcome", "tenant"],
)
SUBMISSIONS = Counter(
    "kws_submissions",
    "Create requests sent to Kling, by Kling's answer code (0: accepted; transport: no answer)",
    ["code"],
)
SYNC_CREATES = Counter(
    "kws_sync_creates",
    "Create requests without Prefer: respond-async, by whether their process's waiting budget "
    "(SUBMIT_WAITING_MAX) let them wait for Kling (waited) or they were answered 202 queued at once "
    "(queued_at_once)",
    ["outcome"],
)
UPSTREAM_SECONDS = Histogram(
    "kws_upstream_request_seconds",
    "Time of one call to Kling's API, by operation (create, query, list), errors included",
    ["operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
DOWNLOAD_SECONDS = Histogram(
    "kws_download_seconds",
    "Time of one video download into the archive, by outcome (ok, or the failure's reason)",
    ["outcome"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
DOWNLOAD_BYTES = Counter("kws_download_bytes", "Bytes of video downloaded into the archive")
DELIVERIES = Counter(
    "kws_delivery_attempts",
    "Notification delivery attempts, by sink (webhook, slack, email), outcome (delivered, retry, "
    "gone, refused) and the task's tenant",
    ["sink", "outcome", "tenant"],
)
TASKS_FINISHED = Counter(
    "kws_tasks_finished",
    "Tasks that reached a final status, by tenant and status (succeed, failed, rejected, expired); a task "
    "that expired and then got Kling's final word counts under both",
    ["tenant", "status"],
)
UNITS = Counter(
    "kws_task_units",
    "Kling units (final_unit_deduction) spent by finished tasks, by tenant",
    ["tenant"],
)

# Every distinct label value is a series in each process and in Prometheus, for good. Tenant names come
# from the operator's configuration, but a task's tenant is read from its stored record, and a record
# recovered after Redis was lost takes it from Kling's answer or the archive: the cap keeps a damaged
# or hostile store from turning the counters into thousands of series. Past it, and for a name that is
# not a tenant name, the value is OTHER_TENANT (not a valid tenant name, so never a tenant's own).
TENANT_LABELS_MAX = 100
OTHER_TENANT = "_other"
_tenant_labels: set[str] = set()
_tenant_labels_lock = threading.Lock()

_CALLBACK_REFUSALS = {
    400: "malformed",
    401: "bad_signature",
    403: "bad_token",
    404: "unknown_task",
    409: "conflict",
    413: "too_large",
}
_PID_IN_FILE_NAME = re.compile(r"_(\d+)(?:job)?\.db$")
_SCRAPE_PATIENCE_S = 5.0


def in_work_horse() -> None:
    """Called first thing in an RQ work horse. RQ forks one per job, and files named by the horse's pid
    would pile up by the thousand; a worker runs one horse at a time, so its horses can take turns with
    one set of files (reopened, with what earlier horses wrote, at the first metric the horse touches)."""
    global _horse_of
    _horse_of = os.getppid()


def remove_files_of_dead_processes() -> None:
    """At start: the directory keeps only live processes' files, so each run's counters start at 0.

    The web process and every worker do this as they start, often at the same moment (a restart after
    an unclean stop): a file another process removed first is what this one wanted anyway.
    """
    if not MULTIPROCESS_DIR:
        return
    for path in glob.glob(os.path.join(MULTIPROCESS_DIR, "*.db")):
        match = _PID_IN_FILE_NAME.search(path)
        if match and not _alive(int(match[1])):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def _alive(pid: int) -> bool:
    """A zombie (killed, and not yet reaped by its parent, which may take a while when the parent was
    killed too) is dead: nothing writes its files any more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:  # "<pid> (<name>) <state> ..."
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):  # gone meanwhile, or no /proc (not Linux)
        return True


# --- the helpers the code calls ---


def tenant_label(tenant: str) -> str:
    """The `tenant` label's value for a tenant: its name, while this process has seen fewer than
    TENANT_LABELS_MAX names; empty for no tenant."""
    if not tenant:
        return ""
    if not valid_name(tenant):
        return OTHER_TENANT
    with _tenant_labels_lock:
        if tenant not in _tenant_labels:
            if len(_tenant_labels) >= TENANT_LABELS_MAX:
                return OTHER_TENANT
            _tenant_labels.add(tenant)
    return tenant


def count_callback(
    shape: str, *, tenant: str = "", outcome: str | None = None, refused_with: int | None = None
) -> None:
    """One callback answered: with its outcome, or refused with that HTTP status (a 503: unavailable)."""
    if outcome is None:
        outcome = "unavailable" if refused_with == 503 else _CALLBACK_REFUSALS.get(refused_with or 0, "error")
    CALLBACKS.labels(shape, outcome, tenant_label(tenant)).inc()


def upstream_called(operation: str, seconds: float, code: str) -> None:
    """One call to Kling, with Kling's answer code (`0` accepted, `transport` no answer); a create is
    also counted by that code."""
    UPSTREAM_SECONDS.labels(operation).observe(seconds)
    if operation == "create":
        SUBMISSIONS.labels(code).inc()


def sync_create(*, waited: bool) -> None:
    SYNC_CREATES.labels("waited" if waited else "queued_at_once").inc()


def downloaded(outcome: str, seconds: float, size: int = 0) -> None:
    """One video download into the archive: `ok`, or the failure's reason."""
    DOWNLOAD_SECONDS.labels(outcome).observe(seconds)
    if size:
        DOWNLOAD_BYTES.inc(size)


def delivery_attempted(sink: str, outcome: str, tenant: str) -> None:
    DELIVERIES.labels(sink, outcome, tenant_label(tenant)).inc()


def task_finished(tenant: str, status: str, units: float) -> None:
    """A task reached a final status, spending `units`: counted once the change is committed."""
    label = tenant_label(tenant)
    TASKS_FINISHED.labels(label, status).inc()
    if units:
        UNITS.labels(label).inc(units)


# --- the scrape ---


class _FilesOfTheMoment(Collector):
    """Every process's counters, from the files. A process that starts removes dead processes' files,
    maybe between a scrape's listing of the directory and its reading of them: such a scrape lists the
    directory again until a listing reads whole (a clean-up takes milliseconds; a few seconds at most)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Iterable[Metric]:
        deadline = time.monotonic() + _SCRAPE_PATIENCE_S
        while True:
            files = glob.glob(os.path.join(self.path, "*.db"))
            try:
                metrics: Iterable[Metric] = MultiProcessCollector.merge(files, accumulate=True)
                return metrics
            except FileNotFoundError:
                if time.monotonic() > deadline:
                    raise


class _OneTenant(Collector):
    """What a tenant may see of `registry`: the series labelled with its own tenant, and nothing else. A
    family with none of them is left out whole, so a tenant's scrape does not even list the account's."""

    def __init__(self, registry: CollectorRegistry, tenant: str) -> None:
        self.registry = registry
        self.tenant = tenant

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            kept.samples = [s for s in family.samples if s.labels.get("tenant") == self.tenant]
            if kept.samples:
                yield kept


def counted(tenant: str | None = None) -> bytes:
    """This process's counters and histograms (or every process's, from the files), in the text format;
    with `tenant`, only what that tenant may see. A scrape adds the gauges read from Redis
    (domain/gauges.py)."""
    if MULTIPROCESS_DIR:
        registry = CollectorRegistry()
        registry.register(_FilesOfTheMoment(MULTIPROCESS_DIR))
    else:
        registry = REGISTRY
    if tenant is not None:
        visible = CollectorRegistry()
        visible.register(_OneTenant(registry, tenant))
        registry = visible
    return generate_latest(registry)
