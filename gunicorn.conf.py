"""gunicorn settings for the web process (`gunicorn -c gunicorn.conf.py wsgi:app`)."""

import os

# Metrics choose where they keep their values when the service's modules are imported: set it first.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "data/metrics")

from prometheus_client import multiprocess

from webhook_service import logs, metrics

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
timeout = 60
graceful_timeout = 20
accesslog = "-"
# %(U)s is the path without the query string: callback URLs carry their token in the query.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(D)sus'
logconfig_dict = logs.gunicorn_logconfig()


def on_starting(server: object) -> None:
    """A new run's counters start from 0: drop the files of processes that are gone."""
    metrics.remove_files_of_dead_processes()


def child_exit(server: object, worker: object) -> None:
    """A dead worker's live gauges must stop counting; its counters stay in the totals."""
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
