"""gunicorn settings for the web process (`gunicorn -c gunicorn.conf.py wsgi:app`)."""

import contextlib
import os
import socket

# Metrics choose where they keep their values when the service's modules are imported: set it first.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "data/metrics")

from prometheus_client import multiprocess

from webhook_service.config import ConfigError, Settings
from webhook_service.config_values import host_and_port
from webhook_service.integrations import logs, metrics
from webhook_service.integrations.redis_config import RedisUnfit, check_at_start
from webhook_service.services import redis_connection
from webhook_service.web.auth import announce_if_open, open_at_start


def _default_host() -> str:
    """Every interface only when clients must authenticate (client credentials in the environment, or a
    client made with `flask clients create`): an open API stays on this machine unless HOST says
    otherwise (a platform's router, a container: HOST=0.0.0.0). Decided at start: a service that
    starts open stays on loopback until restarted, even once its first client closes it."""
    try:
        open_api = open_at_start(Settings.from_env())
    except ConfigError:
        return "127.0.0.1"  # the workers refuse to start and say why
    return "127.0.0.1" if open_api else "0.0.0.0"


bind = host_and_port(os.environ.get("HOST") or _default_host(), os.environ.get("PORT", "8000"))


def _default_workers() -> int:
    """Two per usable core, near gunicorn's advice ((2 x cores) + 1), at most 12. With one per core,
    the keep-alive connections that reuse_port hashes to one worker can keep its core busy while the
    other idles, and the scheduler cannot move that load: on 2 cores, 4 workers of 2 threads gave the
    callbacks a p99 of 11-23 ms at half their maximum rate, 2 of 4 gave 15-53 ms (docs/benchmarks.md)."""
    try:
        cores = len(os.sched_getaffinity(0))  # a cpuset counts; a CPU quota does not: set WEB_CONCURRENCY
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(2 * cores, 12)


workers = int(os.environ.get("WEB_CONCURRENCY", "0")) or _default_workers()
# Three: one a synchronous create may hold (SUBMIT_WAITING_MAX), one an event long-poll or stream may
# hold (EVENTS_WAITING_MAX), and one always free for Kling's callbacks and the health checks.
threads = int(os.environ.get("WEB_THREADS", "3"))
# Each worker listens on its own SO_REUSEPORT socket and the kernel spreads the connections over them.
# On one shared socket, the worker woken first takes nearly every keep-alive connection of a client
# that is not saturating it (Kling, a proxy's pool), and serves them on one core while the other
# idles: the latency tail doubled (docs/benchmarks.md). The start refuses a port already served.
reuse_port = True
timeout = 60
graceful_timeout = 20
accesslog = "-"
# %(U)s is the path without the query string: callback URLs carry their token in the query.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(D)sus'
logconfig_dict = logs.gunicorn_logconfig()


def on_starting(server: object) -> None:
    """Before any worker starts: refuse a served port, waiting budgets that leave no thread spare or
    an unfit Redis, and start a new run's counters from 0 (drop the files of processes that are gone)."""
    refuse_a_served_port(server.cfg.address)  # type: ignore[attr-defined]
    settings = _settings_or_none()
    if settings is not None:  # else each worker refuses to start and says why (wsgi.py)
        refuse_waiting_budgets_without_a_spare_thread(settings, server.cfg.threads)  # type: ignore[attr-defined]
        refuse_an_unfit_redis(settings)
    metrics.remove_files_of_dead_processes()


def _settings_or_none() -> Settings | None:
    try:
        return Settings.from_env()
    except ConfigError:
        return None


def refuse_waiting_budgets_without_a_spare_thread(settings: Settings, threads_per_worker: int) -> None:
    """Synchronous creates may hold SUBMIT_WAITING_MAX threads of a worker for seconds (web/kling_api.py),
    event long-polls and streams EVENTS_WAITING_MAX more (web/events_api.py): at least one more must be
    left for Kling's callbacks and the health checks."""
    held = settings.submit_waiting_max + settings.events_waiting_max
    if held >= threads_per_worker:
        raise SystemExit(
            f"configuration error: SUBMIT_WAITING_MAX + EVENTS_WAITING_MAX: must be less than WEB_THREADS "
            f"({threads_per_worker}), got {settings.submit_waiting_max} + {settings.events_waiting_max}: "
            "each web process keeps a thread free for Kling's callbacks and health checks (lower them, "
            "or raise WEB_THREADS)"
        )


def refuse_an_unfit_redis(settings: Settings) -> None:
    """Checked once, by the master, before any worker starts: a Redis that would evict data (or, with
    REQUIRE_DURABLE_REDIS, keep nothing on disk) stops the start. The `flask` commands, which build the
    app too, do not repeat the warnings."""
    connection = redis_connection(settings)
    try:
        check_at_start(connection, require_durable=settings.require_durable_redis)
    except RedisUnfit as unfit:
        raise SystemExit(f"refusing to start: {unfit}") from None
    finally:
        connection.close()


def when_ready(server: object) -> None:
    """Serving from now on: say where (with reuse_port the master holds no socket, and gunicorn's own
    "Listening at" line is empty), and loudly if anyone can submit tasks (once, not once per worker)."""
    addresses = ",".join(_shown(address) for address in server.cfg.address)  # type: ignore[attr-defined]
    server.log.info("Serving on %s, each worker on its own SO_REUSEPORT socket", addresses)  # type: ignore[attr-defined]
    with contextlib.suppress(ConfigError):  # each worker refuses to start and says why (wsgi.py)
        announce_if_open(Settings.from_env())


def _shown(address: object) -> str:
    if isinstance(address, tuple):
        host = f"[{address[0]}]" if ":" in address[0] else address[0]
        return f"http://{host}:{address[1]}"
    return f"unix:{address}"


def refuse_a_served_port(addresses: list[object]) -> None:
    """With reuse_port, a second server on the same port would quietly take a share of the traffic
    instead of failing: fail it here, as binding without reuse_port would. (SO_REUSEADDR lets the
    probe past connections of a previous run in TIME_WAIT; only a listening socket stops it.)"""
    for address in addresses:
        if not isinstance(address, tuple):
            continue  # a Unix socket path: gunicorn itself refuses one in use
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address[:2])
            except OSError as error:
                raise SystemExit(f"cannot serve {address[0]}:{address[1]}: {error.strerror}") from None


def child_exit(server: object, worker: object) -> None:
    """A dead worker's live gauges must stop counting; its counters stay in the totals."""
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
