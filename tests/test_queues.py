"""Retry schedules and job ids: what RQ is given must already be the back-off we want."""

from __future__ import annotations

from webhook_service.jobs import backoff_intervals, job_id


def test_backoff_grows_exponentially_within_jitter_and_cap() -> None:
    for _ in range(50):
        intervals = backoff_intervals(10, 8, factor=3, cap_s=3600, jitter=0.2)
        nominal = [min(3600, 10 * 3**n) for n in range(8)]
        assert len(intervals) == 8
        assert all(0.8 * n - 1 <= i <= 1.2 * n + 1 for i, n in zip(intervals, nominal, strict=True))
    assert len({tuple(backoff_intervals(10, 8)) for _ in range(20)}) > 1  # jitter spreads retries out


def test_zero_base_retries_at_once() -> None:
    assert backoff_intervals(0, 5) == [0, 0, 0, 0, 0]


def test_job_ids_are_deterministic_and_rq_safe() -> None:
    assert job_id("archive", "a/b c") == job_id("archive", "a/b c") != job_id("archive", "a/b d")
    assert job_id("archive", "a/b c").replace("-", "").isalnum()
