"""The cluster fixture: every host built and started, and torn down after the test, also after a failure.

Without root or without `ip netns` the tests here are skipped, saying why (printed, and in pytest's
summary of skips). Not in CI (CI=true): CI runs as root with iproute2 installed by scripts/test, so a
host that cannot build namespaces there is a broken CI, and a green run without the cluster suite
would prove nothing about several hosts."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.cluster import ROOT, Cluster
from tests.cluster.hosts import unavailable_reason


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    if reason := unavailable_reason():
        if os.environ.get("CI") == "true":
            pytest.fail(f"tests/cluster must run in CI, and cannot here: {reason}")
        print(f"tests/cluster skipped: {reason}")
        pytest.skip(reason)
    built = Cluster(tmp_path)
    try:
        yield built.start()
    except BaseException:
        print(built.tails())
        keep_logs(built)
        raise
    finally:
        built.stop()


def keep_logs(cluster: Cluster) -> None:
    """Every host's logs kept in test-artifacts/cluster-logs/ after a failure (tmp_path is pruned)."""
    kept = ROOT / "test-artifacts" / "cluster-logs"
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(cluster.workdir / "logs", kept)
    print(f"the hosts' logs: {kept}")
