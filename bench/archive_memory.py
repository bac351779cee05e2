"""Benchmark: what archive jobs run one after another in one process leave behind in memory.

    .venv/bin/python bench/archive_memory.py [--jobs 2000] [--warm-up 300]

Since the archive download runs in the worker's own process (no work horse that ends with it), whatever a
download keeps stays for the worker's life. Here one process runs the archive job's domain function
(domain/archive.py, as the worker runs it) `--jobs` times after `--warm-up` unmeasured ones, each for a
task of its own whose small MP4 comes from the Kling simulator's file server, against a private
redis-server and an archive folder of the run's own, everything on loopback. It prints the process's
RSS every quarter of the run and the Python objects the service's code kept over the measured jobs
(tracemalloc, grouped by the service's line that allocated them: the simulator runs in the same process
and keeps a log of its requests, which is its own). Exits 1 when those objects come to 1 KiB a job or
more: a leak of the job's own making.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import code_version, conditions, print_table
from bench.redis_servers import PrivateRedis
from kling_simulator import SimulatorServer
from webhook_service.config import Settings
from webhook_service.domain import archive
from webhook_service.domain.tasks import Status, Task
from webhook_service.services import Services

SERVICE_CODE = str(Path(__file__).resolve().parent.parent / "webhook_service")
MAX_KEPT_PER_JOB = 1024


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise KeyError("VmRSS")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2000, help="archive jobs measured")
    parser.add_argument("--warm-up", type=int, default=300, help="archive jobs run first, unmeasured")
    args = parser.parse_args()
    print_table([("machine before", conditions()), ("code", code_version())])
    redis_server = PrivateRedis().start()
    try:
        with SimulatorServer() as simulator, tempfile.TemporaryDirectory() as folder:
            simulator.state.add_file("clip.mp4", size=11391)
            settings = Settings.from_env(
                {
                    "REDIS_URL": redis_server.url,
                    "SECRET_KEY": "archive-memory-bench-" + "x" * 24,
                    "KLING_API_BASE": simulator.url,
                    "KLING_API_TOKEN": "unused",
                    "PUBLIC_BASE_URL": "http://127.0.0.1:9",
                    "ARCHIVE_URL": folder,
                    "DOWNLOAD_ALLOWED_HOSTS": "127.0.0.1",
                }
            )
            svc = Services.build(settings)
            url = f"{simulator.url}/files/extra/clip.mp4"

            def archive_one(n: int) -> None:
                video = {"id": f"video-{n}", "url": url, "duration": "5"}
                task = Task(
                    f"memory-{n}", status=Status.SUCCEED, task_id=f"k-{n}", task_result={"videos": [video]}
                )
                svc.store.create(task, {"prompt": "a clip"})
                archive.archive_task(svc, task.external_task_id)
                archived = svc.store.get(task.external_task_id)
                assert archived is not None and archived.archive_state is not None
                assert archived.archive_state.value == "archived", archived.archive_error

            for n in range(args.warm_up):
                archive_one(n)
            gc.collect()
            tracemalloc.start(1)
            before, start_mib, marks = tracemalloc.take_snapshot(), rss_mib(), []
            for n in range(args.jobs):
                archive_one(args.warm_up + n)
                if (n + 1) % max(1, args.jobs // 4) == 0:
                    marks.append(f"{rss_mib():.1f}")
            gc.collect()
            grown = tracemalloc.take_snapshot().compare_to(before, "lineno")
            tracemalloc.stop()
    finally:
        redis_server.stop()
    ours = [stat for stat in grown if stat.traceback[0].filename.startswith(SERVICE_CODE)]
    kept = sum(stat.size_diff for stat in ours)
    met = kept < MAX_KEPT_PER_JOB * args.jobs
    rows = [
        ("RSS", f"{start_mib:.1f} MiB after the warm-up, then {', '.join(marks)} MiB at each quarter"),
        (
            "kept by the service's code",
            f"{kept:,} bytes over {args.jobs} jobs ({kept / args.jobs:.0f} a job)",
        ),
        *[
            (
                f"  {stat.traceback[0].filename[len(SERVICE_CODE) + 1 :]}:{stat.traceback[0].lineno}",
                f"{stat.size_diff:+,} B",
            )
            for stat in ours[:5]
        ],
        (
            "goal",
            f"under {MAX_KEPT_PER_JOB} bytes a job: {'met' if met else 'missed'}",
        ),
    ]
    print_table(rows)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
