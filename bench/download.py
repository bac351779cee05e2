"""Benchmark the video downloader against curl, both fetching the same file from the loopback simulator.

    .venv/bin/python bench/download.py [--size-mib 1024]

`download()` runs in a child process so the memory measured is the downloader's own: the growth of peak
RSS from just before the call to just after. Both files are checked against the expected SHA-256. Exits 1
when our throughput is under 70% of curl's or peak RSS grows by 30 MiB or more.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kling_simulator import SimulatorServer
from webhook_service.integrations.download import DownloadPolicy, download

MIN_RATIO = 0.70
MAX_RSS_GROWTH_MIB = 30
TIMEOUT_S = 600


def _kib(field: str) -> int:
    """A `Vm...` line of /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def _own_peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(url: str, part: Path, size: int) -> None:
    """Download once and print the timing and peak RSS growth as JSON (run in a fresh process)."""
    policy = DownloadPolicy(allowed_hosts=frozenset({"127.0.0.1"}), max_bytes=max(size, 2 * 1024**3))
    before = _kib("VmRSS")
    peak_after: Callable[[], int]
    try:  # reset the peak to the current RSS, so imports' transient peaks do not hide ours
        Path("/proc/self/clear_refs").write_text("5")
        peak_after = partial(_kib, "VmHWM")
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_after = _own_peak_kib
    started = time.perf_counter()
    result = download(url, part, policy)
    seconds = time.perf_counter() - started
    growth_mib = (peak_after() - before) / 1024
    print(json.dumps({"seconds": seconds, "rss_growth_mib": growth_mib, "sha256": result.sha256}))


def sha256_of(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--child", nargs=3, metavar=("URL", "PART", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), int(args.child[2]))
        return 0

    size = args.size_mib * 1024 * 1024
    with SimulatorServer() as sim, tempfile.TemporaryDirectory(prefix="bench-download-") as tmp:
        sim.state.add_file("bench.bin", size=size)
        url = f"{sim.url}/files/extra/bench.bin"
        expected = sim.state.expected_sha256("bench.bin")

        curl_file = Path(tmp) / "curl.bin"
        started = time.perf_counter()
        curl = ["curl", "-s", "-f", "--noproxy", "*", "-o", str(curl_file), url]
        subprocess.run(curl, check=True, timeout=TIMEOUT_S)
        curl_s = time.perf_counter() - started
        curl_ok = sha256_of(curl_file) == expected
        curl_file.unlink()  # free the space (and page cache) before our run

        part = Path(tmp) / "ours.bin.part"
        command = [sys.executable, __file__, "--child", url, str(part), str(size)]
        run = subprocess.run(command, check=True, timeout=TIMEOUT_S, capture_output=True, text=True)
        ours = json.loads(run.stdout)
        ours_ok = ours["sha256"] == expected and sha256_of(part) == expected

    mib = size / 1024 / 1024
    ratio = curl_s / ours["seconds"]
    print(f"size:             {mib:.0f} MiB ({size} bytes)")
    print(
        f"curl:             {curl_s:.2f} s, {mib / curl_s:.1f} MiB/s, sha256 {'ok' if curl_ok else 'WRONG'}"
    )
    print(
        f"download():       {ours['seconds']:.2f} s, {mib / ours['seconds']:.1f} MiB/s, "
        f"sha256 {'ok' if ours_ok else 'WRONG'}"
    )
    print(f"throughput ratio: {ratio:.2f} (ours/curl, target >= {MIN_RATIO})")
    print(f"peak RSS growth:  {ours['rss_growth_mib']:.1f} MiB (target < {MAX_RSS_GROWTH_MIB})")
    passed = curl_ok and ours_ok and ratio >= MIN_RATIO and ours["rss_growth_mib"] < MAX_RSS_GROWTH_MIB
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
