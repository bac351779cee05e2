"""`flask submit`: a create request from the command line, through the same validation and submission
as the API, and with `--wait`, the task followed until its video (or its images, for an image type
such as `--type generations`) is archived, or it fails. The options are the fields most requests use;
`--extra` takes any other as JSON.

The archive is made by a worker, so `--wait` needs `python -m workers` running; the submission
itself does not (the command sends the task upstream as an API request would).
"""

from __future__ import annotations

import base64
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from flask.cli import with_appcontext

from webhook_service.cli.common import (
    EXIT_FAILED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CommandFailed,
    guarded,
    services,
)
from webhook_service.domain.errors import InputsNotStored, TaskExists
from webhook_service.domain.expand_rules import RATIO_FIELDS
from webhook_service.domain.problems import RequestInvalid
from webhook_service.domain.store_checks import validated
from webhook_service.domain.submission import dispatch, submit_and_wait
from webhook_service.domain.task_types import TASK_TYPES, task_type
from webhook_service.domain.tasks import DEFAULT_TYPE, ArchiveState, Status, Task
from webhook_service.domain.tenants import DEFAULT_TENANT
from webhook_service.integrations.kling import ClientPerProcess
from webhook_service.services import Services

POLL_S = 0.25
FAILED = (Status.FAILED, Status.REJECTED, Status.EXPIRED)


class Image(click.ParamType[str]):
    """An http(s) URL as it is, or a file's path, read and sent as raw Base64 (what Kling takes)."""

    name = "PATH|URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if str(value).startswith(("http://", "https://")):
            return str(value)
        path = Path(value).expanduser()
        if not path.is_file():
            self.fail(f"{value!r} is neither an http(s) URL nor a file", param, ctx)
        return base64.b64encode(path.read_bytes()).decode()


class JsonObject(click.ParamType[dict[str, Any]]):
    name = "JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        try:
            parsed = json.loads(value)
        except ValueError as error:
            self.fail(f"not valid JSON: {error}", param, ctx)
        if not isinstance(parsed, dict):
            self.fail("must be a JSON object", param, ctx)
        return parsed


# (option, field of Kling's request body, type, help)
FIELDS: list[tuple[str, str, Any, str]] = [
    ("--model", "model_name", str, "kling-v1 (default), kling-v2-master, ..."),
    (
        "--image",
        "image",
        Image(),
        "The first frame (image2video), the reference image (generations) or the image to expand "
        "(expand): a file (sent as Base64) or an http(s) URL.",
    ),
    ("--image-tail", "image_tail", Image(), "The last frame: a file or an http(s) URL."),
    ("--human-image", "human_image", Image(), "The person to dress (try-on): a file or a URL."),
    ("--cloth-image", "cloth_image", Image(), "The garment to put on (try-on): a file or a URL."),
    ("--video-id", "video_id", str, "The video to extend (video-extend): an id from a task's result."),
    ("--video", "video", str, "The motion video (motion control): an http(s) URL."),
    (
        "--character-orientation",
        "character_orientation",
        click.Choice(["image", "video"]),
        "Motion control: the character faces as in the image (the default here) or as in the video.",
    ),
    (
        "--prompt",
        "prompt",
        str,
        "What should happen (up to 2,500 characters; text2video, generations need it).",
    ),
    ("--negative-prompt", "negative_prompt", str, "What should not."),
    ("--mode", "mode", str, "std or pro."),
    ("--duration", "duration", str, "5 or 10 (seconds); kling-v3 3 to 15."),
    (
        "--aspect-ratio",
        "aspect_ratio",
        str,
        "16:9, 9:16 or 1:1 (generations: also 4:3, 3:4, 3:2, 2:3, 21:9).",
    ),
    ("--n", "n", int, "How many images to make, 1 to 9 (generations, expand, ...)."),
    ("--cfg-scale", "cfg_scale", float, "0 to 1: how closely to follow the prompt."),
    (
        "--camera-control",
        "camera_control",
        JsonObject(),
        'JSON: \'{"type": "simple", "config": {"zoom": 5}}\'.',
    ),
    (
        "--effect-scene",
        "effect_scene",
        str,
        "The scene (effects): bloombloom, hug, ...; --image or --images, --duration, --model and --mode "
        "go into its input.",
    ),
    ("--external-task-id", "external_task_id", str, "Your id for the task (default: kws-<uuid>)."),
    ("--callback-url", "callback_url", str, "Your webhook for this task's events."),
]


def field_options(command: Any) -> Any:
    for option, field, kind, help_text in reversed(FIELDS):
        command = click.option(option, field, type=kind, help=help_text)(command)
    return command


def shaped_options(command: Any) -> Any:
    """The two fields whose shape a plain option cannot give: a list of images, and four ratios."""
    command = click.option(
        "--image-list",
        "image_list",
        type=Image(),
        multiple=True,
        help="A reference image (multi-image2video): a file or a URL; repeat it, up to 4. Sent as Kling's "
        '[{"image": ...}].',
    )(command)
    return click.option(
        "--expand",
        "expansion",
        type=float,
        nargs=4,
        metavar="UP DOWN LEFT RIGHT",
        help="The expansion ratios (expand): up and down of the image's height, left and right of its "
        "width, each 0 to 2; the new image at most 3 times the area.",
    )(command)


def _shaped_fields(image_list: tuple[str, ...], expansion: tuple[float, ...] | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"image_list": [{"image": image} for image in image_list]} if image_list else {}
    if expansion:
        fields |= dict(zip(RATIO_FIELDS, expansion, strict=True))
    return fields


# A video effect's fields that Kling takes inside `input`: the same options, put there.
EFFECT_INPUT = ("image", "images", "duration", "model_name", "mode")


def effect_options(command: Any) -> Any:
    return click.option(
        "--images",
        "images",
        type=Image(),
        multiple=True,
        help="The two people (effects' two-person scenes such as hug): a file or a URL; give it twice, "
        "left then right.",
    )(command)


def _effect_body(
    given: dict[str, Any], images: tuple[str, ...], extra: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The options and --extra with a video effect's fields in `input` (beside any --extra gives there)."""
    moved = {key: given.pop(key) for key in EFFECT_INPUT if key in given} | (
        {"images": list(images)} if images else {}
    )
    if not moved:
        return given, extra
    extra = dict(extra or {})
    wrapped = extra.pop("input", {})
    if not isinstance(wrapped, dict):
        raise click.UsageError("--extra's input must be a JSON object")
    if clash := sorted(set(moved) & set(wrapped)):
        raise click.UsageError(f"--extra's input repeats {', '.join(clash)}: give each field once")
    return {**given, "input": {**wrapped, **moved}}, extra


# The item each image option (and --video) becomes in a unified body's `contents`, by the path's kind.
FRAMES = (("image", "first_frame"), ("image_tail", "last_frame"))
MOTION = (("image", "image"), ("video", "video"))  # the character, the motion


def _unified_body(given: dict[str, Any], path: str, takes_contents: bool) -> dict[str, Any]:
    """The options in Kling's unified shape (--type kling-3.0-...): the ids in `options`, --duration (a
    number there), --aspect-ratio and --character-orientation in `settings`, and for a body of
    `contents` --prompt, --image and --image-tail as its items (motion control: --image the character,
    --video the motion, facing as in the image unless told). The rest stays at the top, where validation
    names what is unknown."""
    body: dict[str, Any] = {}
    motion = path.startswith("/motion-control/")
    if motion:
        given.setdefault("character_orientation", "image")
    if options := {key: given.pop(key) for key in ("external_task_id", "callback_url") if key in given}:
        body["options"] = options
    keys = ("duration", "aspect_ratio", "character_orientation")
    settings = {key: given.pop(key) for key in keys if key in given}
    if str(settings.get("duration", "")).isdigit():
        settings["duration"] = int(settings["duration"])
    if settings:
        body["settings"] = settings
    if takes_contents:
        contents = [{"type": "prompt", "text": given.pop("prompt")}] if "prompt" in given else []
        items = MOTION if motion else FRAMES
        contents += [{"type": kind, "url": given.pop(key)} for key, kind in items if key in given]
        if contents:
            body["contents"] = contents
    return {**given, **body}


@click.command("submit")
@click.option(
    "--type",
    "type_name",
    type=click.Choice(list(TASK_TYPES)),
    default=DEFAULT_TYPE,
    show_default=True,
    help="The Kling task type: its body's rules and its path upstream.",
)
@field_options
@shaped_options
@effect_options
@click.option(
    "--extra", type=JsonObject(), help='Other fields of the request, as a JSON object: \'{"sound": "on"}\'.'
)
@click.option(
    "--wait", is_flag=True, help="Follow the task until its video or images are archived (needs a worker)."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=0,
    help="Give up after this many seconds, whatever Kling does (0: no limit). With --wait, the whole wait.",
)
@with_appcontext
@guarded
def submit(
    extra: dict[str, Any] | None,
    wait: bool,
    timeout: float,
    type_name: str,
    image_list: tuple[str, ...],
    expansion: tuple[float, ...] | None,
    images: tuple[str, ...],
    **fields: Any,
) -> None:
    """Submit a task (image-to-video unless --type says otherwise), validated as the API validates it."""
    given = {field: value for field, value in fields.items() if value is not None}
    given |= _shaped_fields(image_list, expansion)
    if type_name == "effects":
        given, extra = _effect_body(given, images, extra)
    elif images:
        raise click.UsageError("--images is for --type effects; other types take --image or --image-list")
    if (kind := task_type(type_name)).unified:
        given = _unified_body(given, kind.path, "contents" in kind.rules.field_types)
    if clash := sorted(set(given) & set(extra or {})):
        raise click.UsageError(f"--extra repeats {', '.join(clash)}: give each field once")
    svc = services()
    try:
        body = validated(
            svc,
            DEFAULT_TENANT,
            type_name,
            {**(extra or {}), **given},
            extra_fields=svc.settings.kling_extra_fields,
            allowed_hosts=svc.settings.notify_allowed_hosts,
        )
    except RequestInvalid as invalid:  # the body's problems, with the store's (domain/store_checks.py)
        raise _invalid(invalid) from None
    started = time.monotonic()
    deadline = started + timeout if timeout else None
    try:
        # With a deadline, one attempt to send it and no waiting for a slot: `_follow` goes on from there.
        bounded = _until(svc, deadline)
        wait_s = 0 if deadline else svc.settings.submit_wait_s
        task = submit_and_wait(bounded, body, wait_s, type_name=type_name)
    except RequestInvalid as invalid:  # the store's problems with a body that has none of its own
        raise _invalid(invalid) from None
    except TaskExists:
        raise CommandFailed(
            f"external_task_id {body['external_task_id']!r} is already used", EXIT_USAGE
        ) from None
    except InputsNotStored as error:
        raise CommandFailed(f"nothing was recorded: {error}", EXIT_UNAVAILABLE) from None
    click.echo(f"external_task_id: {task.external_task_id}")
    if task.status is Status.REJECTED:
        raise CommandFailed(f"Kling refused the task: {_error(task)}", EXIT_FAILED)
    if task.status is Status.QUEUED and _upstream_unavailable(task):
        raise CommandFailed(
            f"Kling is unavailable ({_error(task)}); the task is queued and a worker sends it later",
            EXIT_UNAVAILABLE,
        )
    if not wait:
        click.echo(f"task_id: {task.task_id or '-'}\nstatus: {task.status.value}")
        return
    _follow(bounded, task.external_task_id, started, deadline)


def _invalid(invalid: RequestInvalid) -> CommandFailed:
    for problem in invalid.problems:
        click.echo(f"{problem.field or '(body)'}: {problem.message} [{problem.code}]", err=True)
    return CommandFailed("the request is invalid; nothing was sent", EXIT_USAGE)


def _until(svc: Services, deadline: float | None) -> Services:
    """`svc` with Kling's requests cut short at `deadline`: a create or a lookup that hangs (Kling
    unreachable, a stalled gateway) cannot hold the command past its --timeout."""
    if deadline is None:
        return svc
    return replace(svc, kling=ClientPerProcess(svc.settings, deadline=deadline))


def _upstream_unavailable(task: Task) -> bool:
    """No answer, or Kling's server-side codes (5000-5002): not a refusal of this request."""
    error = task.error or {}
    return bool(error) and (error.get("code") is None or error["code"] >= 5000)


def _error(task: Task) -> str:
    error = task.error or {}
    return f"code {error.get('code')}: {error.get('message') or task.status_msg}"


def _follow(svc: Services, external_task_id: str, started: float, deadline: float | None) -> None:
    """Print each new status and archive state with the time since submission, until the end.

    On a terminal the last line also ticks, so a long wait visibly goes on.
    """
    live = sys.stdout.isatty()
    shown: set[str] = set()
    while True:
        task = svc.store.get(external_task_id)
        if task is None:
            raise CommandFailed(f"task {external_task_id} is no longer recorded", EXIT_FAILED)
        elapsed = time.monotonic() - started
        # Both can change between two looks (succeed, then archiving at once): each gets its line.
        states = {task.status.value: _describe(task)}
        if task.archive_state is not None:
            states[task.archive_state.value] = task.archive_state.value
        new = [text for state, text in states.items() if state not in shown]
        for text in new:
            click.echo(("\r" if live else "") + f"{elapsed:7.1f}s  {text}" + ("\033[K" if live else ""))
        shown.update(states)
        if live and not new:
            click.echo(f"\r{elapsed:7.1f}s  ...", nl=False)
        if task.status in FAILED:
            raise CommandFailed(f"task {task.status.value}: {task.status_msg or _error(task)}", EXIT_FAILED)
        if task.archive_state is ArchiveState.FAILED:
            raise CommandFailed(f"archive failed: {task.archive_error}", EXIT_FAILED)
        if task.archive_state is ArchiveState.ARCHIVED:
            _echo_locations(svc, task)
            return
        if deadline is not None and time.monotonic() >= deadline:
            raise CommandFailed(
                f"gave up after {deadline - started:g} s (--timeout); the task is {task.status.value}",
                EXIT_FAILED,
            )
        if task.status is Status.QUEUED:
            dispatch(svc)  # help the queue along, as a waiting API request does (svc is `_until` deadline)
        time.sleep(POLL_S)


def _describe(task: Task) -> str:
    detail = f"  task_id {task.task_id}" if task.status is Status.SUBMITTED and task.task_id else ""
    return f"{task.status.value}{detail}"


def _echo_locations(svc: Services, task: Task) -> None:
    base_url = svc.settings.public_base_url
    for n, video in enumerate(task.archived_videos):
        where = _where(svc, video["key"])
        click.echo(f"{video['kind']} {video['video_id']}: {where}  ({task.archive_link(base_url, n)})")
    for n, image in enumerate(task.archived_images):
        link = task.archive_link(base_url, n, "images")
        click.echo(f"image {image['image_index']}: {_where(svc, image['key'])}  ({link})")


def _where(svc: Services, key: str) -> str:
    path = svc.storage.local_path(key)
    return str(path) if path is not None else f"{svc.settings.archive_url.rstrip('/')}/{key}"
