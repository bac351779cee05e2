"""Hosts as Linux network namespaces on this machine, wired to one Ethernet switch.

Each host is a namespace with one address (10.231.N.<octet>/24) on a veth whose other end is a port of a
bridge in a "switch" namespace; the test process itself (the root namespace) is one more host on the
same switch, at .1, so it can reach every host and every host can reach it, and no host can reach
anything else: the namespaces have no default route. The bridge lives in a namespace of its own rather
than in the root namespace so the machine's own firewall and bridge settings never see the traffic.

Names carry the test process's pid (`kwsc-<pid>-<host>`, root link `kwsc<pid>`): a run that crashed
leaves namespaces whose pid is dead, and the next run removes them first. A host is cut off with
blackhole routes (packets to those addresses dropped, as a firewall rule would), because neither
nftables nor iptables can be assumed installed, while `ip` is wherever `ip netns` is.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import alive, die_with_parent, wait_for

PREFIX = "kwsc"
_NAMESPACE = re.compile(rf"^{PREFIX}-(\d+)-\S+")
_ROOT_LINK = re.compile(rf"^{PREFIX}(\d+)$")
ROOT_OCTET = 1


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """One `ip` command; a failure is raised with its message, which says more than an exit code."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def unavailable_reason() -> str:
    """Why hosts cannot be built here ("" when they can): namespaces need root and iproute2."""
    if os.geteuid() != 0:
        return "building hosts as network namespaces needs root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = f"{PREFIX}-{os.getpid()}-probe"
    added = ip("netns", "add", probe, check=False)
    if added.returncode != 0:
        return f"`ip netns add` does not work here: {added.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return ""


def namespace_pids(netns: str) -> list[int]:
    done = ip("netns", "pids", netns, check=False)
    return [int(word) for word in done.stdout.split()] if done.returncode == 0 else []


def _killed_all(netns: str) -> bool:
    """SIGKILL every process in `netns`; True once there is none left."""
    pids = namespace_pids(netns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return not pids


def _remove_namespace(netns: str) -> None:
    """Kill whatever runs in it (a namespace outlives `ip netns del` while a process is inside), then
    delete it; its veth ends go with it, and their peers in other namespaces too."""
    with contextlib.suppress(AssertionError):  # deleted all the same: freed with its last process
        wait_for(lambda: _killed_all(netns), timeout=10, what=f"every process in {netns} gone")
    ip("netns", "del", netns, check=False)


def remove_leftovers(own_pid: int | None = None) -> list[str]:
    """Namespaces and root links of runs whose process is gone (or of this pid, reused): removed."""
    removed = []
    for line in ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if (match := _NAMESPACE.match(name)) and (int(match[1]) == own_pid or not alive(int(match[1]))):
            _remove_namespace(name)
            removed.append(name)
    for line in ip("-o", "link", "show").stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if (match := _ROOT_LINK.match(name)) and (int(match[1]) == own_pid or not alive(int(match[1]))):
            ip("link", "del", name, check=False)
            removed.append(name)
    return removed


def free_subnet() -> int:
    """A third octet N such that 10.231.N.0/24 is on no link of this machine (another run may be on one)."""
    used = set(re.findall(r"inet 10\.231\.(\d+)\.", ip("-4", "-o", "addr", "show").stdout))
    start = os.getpid() % 250
    for step in range(250):
        candidate = (start + step) % 250 + 1
        if str(candidate) not in used:
            return candidate
    raise RuntimeError("every 10.231.N.0/24 is in use on this machine")


@dataclass
class Host:
    """One namespace with one address; the processes started in it, with their logs."""

    role: str
    netns: str
    address: str
    logs: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    cut_from: list[str] = field(default_factory=list)

    def run(self, argv: Sequence[str], env: dict[str, str], name: str, cwd: Path | None = None) -> None:
        """Start `argv` inside this host, its output in logs/<role>-<name>.log. It dies with the test
        process (parent-death signal, kept across `ip netns exec`'s exec): start it from the test's own
        thread."""
        log = self.logs / f"{self.role}-{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *argv],
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        self.processes.append(process)

    def pids(self) -> list[int]:
        return namespace_pids(self.netns)

    def kill(self) -> int:
        """SIGKILL every process of the host at once, as a lost machine; returns how many there were."""
        pids = self.pids()
        _killed_all(self.netns)
        for process in self.processes:
            process.wait(timeout=10)
        wait_for(lambda: not self.pids(), timeout=10, what=f"every process of {self.role} gone")
        return len(pids)

    def cut_off(self, addresses: Sequence[str]) -> None:
        """Drop this host's packets to `addresses` (blackhole routes): connections to them hang, new ones
        fail, as behind a firewall rule that drops them."""
        for address in addresses:
            ip("-n", self.netns, "route", "add", "blackhole", f"{address}/32")
            self.cut_from.append(address)

    def reconnect(self) -> None:
        while self.cut_from:
            ip("-n", self.netns, "route", "del", "blackhole", f"{self.cut_from.pop()}/32")

    def tail(self, lines: int = 15) -> str:
        """The last lines of each of the host's logs, for a failure's report."""
        parts = []
        for log in sorted(self.logs.glob(f"{self.role}-*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(parts)


class Network:
    """A switch (a bridge in a namespace of its own), the root namespace plugged in at .1, and hosts."""

    def __init__(self, logs: Path) -> None:
        self.pid = os.getpid()
        self.logs = logs
        self.removed_leftovers = remove_leftovers(self.pid)
        self.subnet = free_subnet()
        self.switch = f"{PREFIX}-{self.pid}-switch"
        self.root_link = f"{PREFIX}{self.pid}"
        self.hosts: dict[str, Host] = {}
        try:
            ip("netns", "add", self.switch)
            ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            ip("-n", self.switch, "link", "set", "br0", "up")
            ip("link", "add", self.root_link, "type", "veth", "peer", "name", "root", "netns", self.switch)
            ip("-n", self.switch, "link", "set", "root", "master", "br0", "up")
            ip("addr", "add", f"{self.address(ROOT_OCTET)}/24", "dev", self.root_link)
            ip("link", "set", self.root_link, "up")
        except BaseException:
            self.teardown()
            raise

    def address(self, octet: int) -> str:
        return f"10.231.{self.subnet}.{octet}"

    @property
    def root_address(self) -> str:
        """The test process's own address on the switch (balancer, receiver, client)."""
        return self.address(ROOT_OCTET)

    def add_host(self, role: str, octet: int) -> Host:
        netns = f"{PREFIX}-{self.pid}-{role}"
        port = f"p{octet}"
        ip("netns", "add", netns)
        host = Host(role, netns, self.address(octet), self.logs)
        self.hosts[role] = host
        ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns)
        ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        ip("-n", netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip("-n", netns, "link", "set", "eth0", "up")
        ip("-n", netns, "link", "set", "lo", "up")
        return host

    def teardown(self) -> None:
        """Every process killed, every namespace and link removed; safe after a half-built network."""
        for host in self.hosts.values():
            _remove_namespace(host.netns)
            for process in host.processes:
                if process.poll() is None:
                    process.kill()
                process.wait(timeout=10)
        _remove_namespace(self.switch)
        ip("link", "del", self.root_link, check=False)
