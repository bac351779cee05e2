"""Where a task's files go in the archive: one folder per task, named by its creation date and its id.

Its videos and metadata.json (domain/archive.py) and the images its request carried (domain/inputs.py)
share the folder, so everything about one task is found, copied or pruned together.

    <yyyy>/<mm>/<dd>/<external_task_id>/<video_id>.mp4
    <yyyy>/<mm>/<dd>/<external_task_id>/metadata.json
    <yyyy>/<mm>/<dd>/<external_task_id>/inputs/<field>-<sha256, 16 hex>.<ext>
    <yyyy>/<mm>/<dd>/<external_task_id>/inputs/request.json   (every task's request, callback_url, inputs)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from webhook_service.domain.tasks import Task


def task_folder(task: Task) -> str:
    """The task's folder: fixed at creation, so every writer agrees on it whenever it runs."""
    created = datetime.fromtimestamp(task.created_at / 1000, UTC)
    return f"{created:%Y/%m/%d}/{segment(task.external_task_id)}"


def segment(value: str) -> str:
    """One safe path segment from an id of any characters (ids may hold '/', '..' or spaces)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", lambda m: f"%{ord(m.group()):02X}", value) or "_"
    return "%2E" + safe[1:] if safe.startswith(".") else safe
