"""Benchmark: what importing a module of the service costs a process that starts.

    .venv/bin/python bench/import_cost.py [--runs 9] [module ...]

An RQ work horse, a `flask` command and every gunicorn worker pay for their imports before their first
job or request, so a module that pulls in more than it needs shows here. Each module is imported in
`--runs` fresh interpreters (compiled files already on disk, as after the first start); each run
times the import alone, from inside the interpreter, and the medians are printed with how many of
the service's own modules it loaded and which of the heavy libraries. The CPU time is the figure to
compare: on a shared machine the wall time also counts the waits for a core. The default modules are the
domain's vocabulary, the settings, and what a work horse and the web app load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODULES = (
    "webhook_service.domain.tasks",
    "webhook_service.config",
    "webhook_service.jobs",
    "workers.archive",
    "webhook_service.web.app",
)
HEAVY = ("flask", "pydantic", "httpx", "boto3", "redis", "rq", "prometheus_client", "cryptography")
_PROBE = """
import importlib, json, sys, time
started, cpu = time.perf_counter(), time.process_time()
importlib.import_module(sys.argv[1])
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
own = [m for m in sys.modules if m.split(".")[0] in ("webhook_service", "workers")]
heavy = sorted({m.split(".")[0] for m in sys.modules})
print(json.dumps({"seconds": seconds, "cpu": cpu, "own": len(own), "heavy": heavy}))
"""


def measure(module: str, runs: int) -> tuple[float, float, int, list[str]]:
    """The median import times (wall, CPU) over `runs` fresh interpreters, how many of the service's
    modules it loads, and the heavy libraries."""
    results = []
    for _ in range(runs + 1):  # the first run writes any missing compiled files: not counted
        out = subprocess.run(
            [sys.executable, "-c", _PROBE, module], cwd=ROOT, capture_output=True, text=True, check=True
        )
        results.append(json.loads(out.stdout))
    results = results[1:]
    heavy = [name for name in HEAVY if name in results[-1]["heavy"]]
    wall = statistics.median(r["seconds"] for r in results)
    return wall, statistics.median(r["cpu"] for r in results), results[-1]["own"], heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("modules", nargs="*", default=DEFAULT_MODULES)
    args = parser.parse_args()
    print(f"{'module':<30} {'CPU s':>6} {'wall s':>6} {'own modules':>11}  heavy libraries loaded")
    for module in args.modules:
        wall, cpu, own, heavy = measure(module, args.runs)
        print(f"{module:<30} {cpu:>6.3f} {wall:>6.3f} {own:>11}  {', '.join(heavy) or '-'}")


if __name__ == "__main__":
    main()
