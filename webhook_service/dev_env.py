"""data/dev.env: what a running `./scripts/up` made up (its Redis, the simulator's URL and token, the
webhook receiver), for the commands run beside it (`./scripts/kws ...`).

Its first line names the pid of the `up` that wrote it, which removes it when it stops. An `up` killed
outright (SIGKILL, a closed terminal's lost session) cannot: its file then names a Redis, a simulator and
a token that are gone, and a command reading it would fail against them with nothing saying why. So the
file counts only while that pid runs, and a file left behind is ignored with a line on stderr saying so.
scripts/up.py reads the same pid to refuse a second `up` in the same checkout.
"""

from __future__ import annotations

import os
import sys

from dotenv import dotenv_values

DEV_ENV_PATH = "data/dev.env"


def first_line(pid: int) -> str:
    """The line a dev file starts with: `writer_pid` reads the pid back from it."""
    return f"# Written by scripts/up (pid {pid}) for the commands run beside it; removed when it"


def writer_pid(path: str | os.PathLike[str]) -> int | None:
    """The pid the file's first line names; None without a file or without such a line."""
    try:
        with open(path) as dev_file:
            first = dev_file.readline()
        return int(first.split("(pid ", 1)[1].split(")", 1)[0])
    except (OSError, IndexError, ValueError):
        return None


def is_running(pid: int) -> bool:
    if pid <= 0:  # os.kill would signal a process group
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:  # someone else's process: it runs
        return True
    except OSError:
        return False
    return True


def running_writer(path: str | os.PathLike[str]) -> int | None:
    """The pid of the `up` that wrote the file, if it still runs."""
    pid = writer_pid(path)
    return pid if pid is not None and is_running(pid) else None


def dev_env_values(path: str = DEV_ENV_PATH) -> dict[str, str]:
    """The variables the file sets while the `up` that wrote it runs; none otherwise."""
    if not os.path.exists(path):
        return {}
    if running_writer(path) is None:
        pid = writer_pid(path)
        why = "it names no scripts/up pid" if pid is None else f"its scripts/up (pid {pid}) no longer runs"
        print(f"Ignoring {path}: {why} (remove it, or start ./scripts/up again)", file=sys.stderr)
        return {}
    return {name: value for name, value in dotenv_values(path).items() if value is not None}
