"""Archiving finished videos.

For now the job records that it ran for the task; downloading the videos into the archive is the
next step of this module.
"""

from __future__ import annotations

from workers.context import services


def archive_task(external_task_id: str) -> None:
    services().store.append_history(external_task_id, {"event": "archive_job", "source": "worker"})
