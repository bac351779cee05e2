"""The processes scripts/up starts: each in a process group of its own, its output in data/logs/<name>.log.

A child's stdout and stderr come through a pipe to a thread that appends each line to the child's log
file, keeps the last few in memory and hands the line to the console (which shows it, or only its
warnings). Through a pipe rather than straight into the file, because a child that dies must show its
last lines of this run, and the file holds the earlier runs' too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from up_console import Console

TAIL_LINES = 15
STOP_TIMEOUT_S = 10.0


@dataclass
class Child:
    process: subprocess.Popen[str]
    log_file: Path
    relay: threading.Thread | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))


class Children:
    def __init__(self, root: Path, console: Console) -> None:
        self.root = root
        self.console = console
        self.log_dir = root / "data" / "logs"
        self.children: dict[str, Child] = {}

    def start(self, name: str, command: str | list[str], env: Mapping[str, str] | None = None) -> None:
        """A shell command (the Procfile's) or an argument list; `env` adds to up's environment, so a
        secret handed to a child stays off the process list."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            command,
            shell=isinstance(command, str),
            cwd=self.root,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # Ctrl-C reaches up alone, which stops the children in order
        )
        child = Child(process, self.log_dir / f"{name}.log")
        child.relay = threading.Thread(target=self._relay, args=(name, child), daemon=True)
        child.relay.start()
        self.children[name] = child

    def pid(self, name: str) -> int:
        return self.children[name].process.pid

    def _relay(self, name: str, child: Child) -> None:
        assert child.process.stdout is not None
        with child.log_file.open("a", encoding="utf-8") as log:
            for line in child.process.stdout:
                log.write(line)
                log.flush()
                child.tail.append(line.rstrip("\n"))
                self.console.child_line(name, line.rstrip("\n"))

    def first_exited(self) -> str | None:
        return next((name for name, c in self.children.items() if c.process.poll() is not None), None)

    def report_exit(self, name: str) -> None:
        """Say that `name` exited, with its last lines once its relay has read them all."""
        child = self.children[name]
        if child.relay is not None:
            child.relay.join(timeout=2)
        code = child.process.returncode
        self.console.died(name, code, child.tail, str(child.log_file.relative_to(self.root)))

    def stop_all(self) -> None:
        """SIGTERM to every process group; after STOP_TIMEOUT_S, SIGKILL to whatever is left of them
        (a leader that exited may leave members behind: a work horse, a shell's command)."""
        for child in self.children.values():
            _signal_group(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in self.children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for child in self.children.values():
            _signal_group(child.process.pid, signal.SIGKILL)
            child.process.wait()
            if child.relay is not None:
                child.relay.join(timeout=2)  # their last lines into the files before up exits


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(pid, signum)
