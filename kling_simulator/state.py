"""The simulator's in-memory state: tasks, scenarios, the callback log, and the scheduled deliveries.

Everything is guarded by one lock because the HTTP server is threaded and tests read the state from
their own thread while callbacks are being delivered.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections import defaultdict
from functools import partial
from typing import Any

import httpx

from .delivery import Scheduler, callback_headers, post
from .extend import EXTEND, extend, parent_video, refusal
from .files import FileStore
from .images import TINY_PNG
from .lip_sync import ADVANCED, identify
from .lip_sync import refusal as lip_sync_refusal
from .scenario import DEFAULT_SCENARIO, Scenario, parse_scenario
from .tasks import TASK_TYPES, Task, pack_of, slots_of


def _external_id(body: dict[str, Any], unified: bool) -> Any:
    return (body.get("options") or {}).get("external_task_id") if unified else body.get("external_task_id")


class SimError(Exception):
    """An error Kling would answer, in its envelope."""

    def __init__(self, http: int, code: int, message: str) -> None:
        super().__init__(message)
        self.http, self.code, self.message = http, code, message


class SimState:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._scheduler = Scheduler()
        self._client = httpx.Client(trust_env=False)
        self.files = FileStore()
        self._generation = 0
        self._reset_locked()

    def _reset_locked(self) -> None:
        self._default: dict[str, Any] = dict(DEFAULT_SCENARIO)
        self._scenarios: dict[str, dict[str, Any]] = {}
        self._tasks: dict[str, Task] = {}
        self._by_external: dict[str, Task] = {}
        self._order: list[Task] = []
        self._open: set[str] = set()
        self._callbacks: list[dict[str, Any]] = []
        self._sessions: dict[str, list[dict[str, Any]]] = {}  # identify-face's, by session_id
        self._max_open_seen = 0
        # Deliveries already running when reset happens must not log into the fresh state.
        self._generation += 1

    # --- configuration (Python API and control endpoints) ---

    def set_default(self, scenario: dict[str, Any]) -> None:
        """Replace the default scenario (validated now: raises ValueError)."""
        parse_scenario(scenario)
        with self._lock:
            self._default = dict(scenario)

    def set_scenario(self, external_task_id: str, scenario: dict[str, Any]) -> None:
        """Override default-scenario keys for the task created with this external_task_id."""
        parse_scenario(scenario)
        with self._lock:
            self._scenarios[external_task_id] = dict(scenario)

    def add_file(
        self,
        name: str,
        *,
        size: int | None = None,
        data: bytes | None = None,
        faults: list[str] | tuple[str, ...] = (),
        ranges: bool = True,
        redirect_to: str | None = None,
    ) -> None:
        """Serve a file at `/files/extra/<name>` (no auth); see `kling_simulator.files`.

        `size` serves that many deterministic pseudo-random bytes (generated, never held in memory), `data`
        serves the given bytes. `faults` are consumed one per request: "truncate" (full Content-Length,
        about half the body), "drop" (chunked, connection dropped after an eighth), "slow" (a 1 s stall
        after a quarter), "chunked" (the whole body without Content-Length), or a status "403", "404",
        "410", "500", "503". `ranges=False` ignores `Range`; `redirect_to` answers 302 to that Location.
        Registering a name again replaces the file.
        """
        self.files.add(name, size=size, data=data, faults=faults, ranges=ranges, redirect_to=redirect_to)

    def file_requests(self) -> list[dict[str, Any]]:
        """Each request for an extra file: name, range, if_range, status, fault, time."""
        return self.files.requests()

    def expected_sha256(self, name: str) -> str:
        """Hex SHA-256 of an extra file's full body (streamed, cached)."""
        return self.files.expected_sha256(name)

    def reset(self) -> None:
        """Forget all tasks, callbacks, scenarios and extra files and cancel callbacks not yet sent."""
        with self._lock:
            self._scheduler.clear()
            self._reset_locked()
        self.files.clear()

    def close(self) -> None:
        self._scheduler.close()
        self._client.close()

    # --- inspection ---

    def tasks(self) -> list[dict[str, Any]]:
        with self._lock:
            return [task.snapshot() for task in self._order]

    def face_sessions(self) -> list[str]:
        """The session_ids identify-face has answered, oldest first."""
        with self._lock:
            return list(self._sessions)

    def callbacks(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry, headers=dict(entry["headers"])) for entry in self._callbacks]

    @property
    def max_open_seen(self) -> int:
        with self._lock:
            return self._max_open_seen

    def pending_callbacks(self) -> int:
        """Scheduled callback jobs not started yet."""
        return self._scheduler.pending()

    # --- the API's operations ---

    def create(
        self,
        body: dict[str, Any],
        headers: dict[str, str],
        base_url: str,
        task_type: str = "image2video",
        *,
        unified: bool = False,
    ) -> tuple[Task, SimError | None]:
        """Create a task as the scenario says; raises SimError when nothing is created.

        Returns the task and, for `create_error.after_create`, the error to answer anyway. A task of
        Kling's unified API (`unified`, made as `task_type` is) keeps its options in `options`.
        """
        external = _external_id(body, unified)
        with self._lock:
            override = self._scenarios.get(external, {}) if external is not None else {}
            scenario = parse_scenario({**self._default, **override})
            error = scenario.create_error
            if error and not error.after_create:
                raise SimError(error.http, error.code, error.message)
            if external is not None and external in self._by_external:
                raise SimError(400, 1201, f"external_task_id {external!r} already exists")
            self._open = {tid for tid in self._open if self._tasks[tid].is_open()}
            limit = parse_scenario(self._default).max_open
            if limit is not None and self._slots_taken(task_type) + slots_of(task_type, body) > limit:
                raise SimError(429, 1303, "parallel task over resource pack limit")
            parent = parent_video(self._order, body.get("video_id")) if task_type == EXTEND else None
            if task_type == EXTEND and (why := refusal(parent, body.get("video_id"))):
                raise SimError(400, 1201, why)
            if task_type == ADVANCED and (why := lip_sync_refusal(self._sessions, body)):
                raise SimError(400, 1201, why)
            task = self._new_task(body, headers, scenario, base_url.rstrip("/"), task_type, unified)
            if parent is not None:
                extend(task, parent)
            self._tasks[task.task_id] = task
            self._order.append(task)
            if external is not None:
                self._by_external[external] = task
            if task.is_open():
                self._open.add(task.task_id)
            self._max_open_seen = max(self._max_open_seen, len(self._open))
            generation = self._generation
        self._schedule(task, generation)
        return task, SimError(error.http, error.code, error.message) if error else None

    def _slots_taken(self, task_type: str) -> int:
        """The slots the open tasks of `task_type`'s resource pack hold (`max_open` is per pack)."""
        pack = pack_of(task_type)
        open_tasks = (self._tasks[tid] for tid in self._open)
        return sum(slots_of(t.task_type, t.request) for t in open_tasks if pack_of(t.task_type) == pack)

    def _new_task(
        self,
        body: dict[str, Any],
        headers: dict[str, str],
        scenario: Scenario,
        base: str,
        task_type: str,
        unified: bool = False,
    ) -> Task:
        task_id = str(secrets.randbelow(9 * 10**17) + 10**17)
        while task_id in self._tasks:
            task_id = str(secrets.randbelow(9 * 10**17) + 10**17)
        task = Task(
            task_id=task_id,
            task_type=task_type,
            external_task_id=_external_id(body, unified),
            request=body,
            headers=headers,
            scenario=scenario,
            created_ms=int(time.time() * 1000),
            created_mono=time.monotonic(),
            unified=unified,
        )
        if TASK_TYPES[task_type][0].split("/")[0] == "images":
            task.images = self._images(body, scenario, base, task_id)
            return task
        if unified:  # the unified API's duration is a number in `settings`
            body = {**body, **(body.get("settings") or {})}
        wrapped = body.get("input")  # a video effect's duration is in its input
        duration = str((wrapped if isinstance(wrapped, dict) else body).get("duration", "5"))
        # `video_files` points the videos at extra files (and sets their number) instead of the sample.
        for file_name in scenario.video_files or (None,) * scenario.videos:
            video_id = str(uuid.uuid4())
            url = f"{base}/files/extra/{file_name}" if file_name else f"{base}/files/{task_id}/{video_id}.mp4"
            video = {"id": video_id, "url": url, "duration": duration}
            if task.watermark:
                video["watermark_url"] = f"{base}/files/{task_id}/{video_id}_watermark.mp4"
            task.videos.append(video)
        return task

    @staticmethod
    def _images(body: dict[str, Any], scenario: Scenario, base: str, task_id: str) -> list[dict[str, Any]]:
        """`n` images (1 when absent), each a small real PNG; `video_files` points them at extra files
        instead (and sets their number), as it does videos."""
        asked = body.get("n")
        count = asked if isinstance(asked, int) else 1
        names = scenario.video_files or tuple(f"image-{index}.png" for index in range(count))
        return [
            {"index": index, "url": f"{base}/files/{'extra' if scenario.video_files else task_id}/{name}"}
            for index, name in enumerate(names)
        ]

    def identify_face(self, body: object, base_url: str) -> dict[str, Any]:
        """identify-face's `data`: a new session and its faces, each face's picture served from now."""
        with self._lock:
            try:
                session_id, faces = identify(self._order, body, base_url.rstrip("/"))
            except ValueError as error:
                raise SimError(400, 1201, str(error)) from None
            self._sessions[session_id] = faces
        self.files.add(f"face-{session_id}.png", data=TINY_PNG)
        return {"session_id": session_id, "face_data": faces}

    def get(self, task_or_external_id: str) -> Task | None:
        with self._lock:
            return self._tasks.get(task_or_external_id) or self._by_external.get(task_or_external_id)

    def unified_tasks(self) -> list[Task]:
        """The unified API's tasks, newest first, as its `POST /tasks` lists them (every type at once)."""
        with self._lock:
            return [task for task in self._order[::-1] if task.unified]

    def page(self, page_num: int, page_size: int, task_type: str = "image2video") -> list[Task]:
        """The tasks of one type, newest first, as Kling lists each type at its own path."""
        with self._lock:
            newest = [task for task in self._order[::-1] if task.task_type == task_type and not task.unified]
        return newest[(page_num - 1) * page_size : page_num * page_size]

    # --- callbacks ---

    def _schedule(self, task: Task, generation: int) -> None:
        """One job per distinct delay, so steps due together are sent in list order by one worker."""
        if task.callback_url is None:
            return
        by_delay: dict[float, list[int]] = defaultdict(list)
        for index, step in enumerate(task.scenario.steps):
            if index == 0 and task.scenario.before_response:
                continue  # sent inline by deliver_first()
            if step.send and step.copies:
                by_delay[step.delay].append(index)
        for delay, indexes in by_delay.items():
            self._scheduler.call_at(
                task.created_mono + delay, partial(self._send_steps, task, indexes, generation)
            )

    def deliver_first(self, task: Task) -> None:
        """For `before_response`: wait for step 0's delay and deliver it on the calling (request) thread."""
        steps = task.scenario.steps
        if not (task.scenario.before_response and steps and steps[0].send and task.callback_url):
            return
        time.sleep(max(0.0, task.created_mono + steps[0].delay - time.monotonic()))
        with self._lock:
            generation = self._generation
        self._send_steps(task, [0], generation)

    def _send_steps(self, task: Task, indexes: list[int], generation: int) -> None:
        url = task.callback_url
        assert url is not None
        for index in indexes:
            step = task.scenario.steps[index]
            text = json.dumps(task.callback_body(index), separators=(",", ":"))
            msg_id = f"msg_{uuid.uuid4().hex}"  # copies are the same message sent again: same id
            for _ in range(step.copies):
                headers = callback_headers(task.scenario.webhook_secret, msg_id, text)
                status, error = post(self._client, url, text.encode(), headers)
                with self._lock:
                    if generation != self._generation:
                        return
                    self._callbacks.append(
                        {
                            "url": url,
                            "headers": headers,
                            "body": text.encode(),
                            "status_code": status,
                            "error": error,
                            "time": time.time(),
                            "task_id": task.task_id,
                            "external_task_id": task.external_task_id,
                            "task_status": step.status,
                        }
                    )
