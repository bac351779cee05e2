"""The dashboard's pages: tasks (with the last 24 hours' activity), one task, deliveries with the system
panel, and signing in and out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask.typing import ResponseReturnValue

from webhook_service.domain.activity import last_hours
from webhook_service.domain.clock import now_ms, parse_since
from webhook_service.domain.errors import NotReplayable
from webhook_service.domain.inputs import REFERENCE_KEY, Slot, audio_slots, image_slots, reference
from webhook_service.domain.task_types import TASK_TYPES
from webhook_service.domain.tasks import Status, Task
from webhook_service.domain.tenants import client_id, with_client_ids
from webhook_service.domain.video_extend import lineage
from webhook_service.domain.views import client_history
from webhook_service.notify.deliveries import DeliveryStore
from webhook_service.notify.records import REPLAYABLE, Delivery, DeliveryStatus
from webhook_service.web import tasks_api
from webhook_service.web.auth import client_auth_required, current_scope
from webhook_service.web.auth_limit import FailedAuthLimit, TooManyFailures
from webhook_service.web.context import current_services as services
from webhook_service.web.dashboard import session as operator
from webhook_service.web.dashboard.activity_chart import activity_panel
from webhook_service.web.dashboard.listing import PAGE_SIZE, RequestSummaries, in_motion, list_page
from webhook_service.web.dashboard.present import InputLink, request_rows
from webhook_service.web.dashboard.system import system_state
from webhook_service.web.dashboard.thumbnails import thumbnail
from webhook_service.web.errors import ApiError

log = logging.getLogger(__name__)

SlotsOf = Callable[[dict[str, Any]], Iterator[Slot]]  # image_slots or audio_slots

bp = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/dashboard-static",  # the app keeps /static for itself
)

REFRESH_S = 2
DELIVERIES_PER_PAGE = 50
SOON_MS = 60_000  # a pending delivery due within this is worth watching; one due in hours is not
SETTLING_MS = 15_000  # after a task's last change its notifications are still being fanned out


def deliveries() -> DeliveryStore:
    return services().deliveries


def _start_arg() -> int:
    raw = request.args.get("start", "0")
    return int(raw) if raw.isdigit() else 0


def _safe_next(target: str | None, fallback: str) -> str:
    """Only a path on this site: a `next` pointing elsewhere would make the login an open redirect.

    Browsers read `/\\host` as `//host` and drop tabs and newlines, so those are refused too.
    """
    if not target or not target.startswith("/") or "\\" in target:
        return fallback
    if any(c.isspace() or not c.isprintable() for c in target) or target.startswith("//"):
        return fallback
    parts = urlsplit(target)
    return fallback if parts.scheme or parts.netloc else target


def _moving(found: list[Delivery], now: int) -> bool:
    return any(d.status is DeliveryStatus.PENDING and (d.next_attempt_at or 0) - now < SOON_MS for d in found)


def _task_moving(task: Task, found: list[Delivery], now: int) -> bool:
    return in_motion(task) or _moving(found, now) or now - task.updated_at < SETTLING_MS


@bp.get("/")
def index() -> str:
    status = request.args.get("status", "")
    if status not in {s.value for s in Status}:
        status = ""
    query = request.args.get("q", "").strip()
    type_name = request.args.get("type", "")
    if type_name not in TASK_TYPES:
        type_name = ""
    page = list_page(services().store, current_scope(), _start_arg(), status, query, type_name)
    summaries: RequestSummaries = current_app.extensions["dashboard_summaries"]
    admission = services().admission
    return render_template(
        "dashboard/index.html",
        page=page,
        activity=activity_panel(last_hours(services().redis, services().keys, current_scope())),
        summaries={t.external_task_id: summaries.get(t.external_task_id) for t in page.tasks},
        statuses=[s.value for s in Status],
        status=status,
        types=list(TASK_TYPES),
        type_name=type_name,
        query=query,
        page_size=PAGE_SIZE,
        packs=admission.packs(),
        in_motion=in_motion,
        now=now_ms(),
        refresh=REFRESH_S if page.refreshing else None,
    )


@bp.get("/tasks/<path:task_ref>")
def task_page(task_ref: str) -> str:
    store = services().store
    task = store.find(task_ref, current_scope())
    if task is None:
        abort(404, f"No task has the task_id or external_task_id {task_ref!r}.")
    found = deliveries().list(task=task.external_task_id, limit=100, scope=current_scope())
    attempts = {d.id: deliveries().attempts(d.id) for d in found}
    history = client_history(services(), task)  # Kling's bodies with the client's own id, as the API shows
    now = now_ms()
    return render_template(
        "dashboard/task.html",
        task=task,
        rows=request_rows(
            with_client_ids(store.request(task.external_task_id) or {}, task.tenant),
            _input_link(_page_ref(task)),
            lambda index: url_for(".task_audio", task_ref=_page_ref(task), index=index),
        ),
        history=history,
        lineage=lineage(services(), task),  # what it extends, what extends it: the task's tenant only
        deliveries=found,
        attempts=attempts,
        replayable=REPLAYABLE,
        now=now,
        refresh=REFRESH_S if _task_moving(task, found, now) else None,
    )


@bp.get("/tasks/<path:task_ref>/videos/<int:index>")
def task_video(task_ref: str, index: int) -> ResponseReturnValue:
    """The archived video for the page's <video>: the API's own view (Range, or a presigned redirect),
    behind the dashboard's session, so the API itself never has to accept a cookie."""
    return tasks_api.get_video(task_ref, index)


@bp.get("/tasks/<path:task_ref>/images/<int:index>")
def task_image(task_ref: str, index: int) -> ResponseReturnValue:
    """An image task's archived image for the page's <img>, as task_video is for videos."""
    return tasks_api.get_image(task_ref, index)


@bp.app_template_global("task_ref")
def task_ref_for(external_task_id: str, tenant: str) -> str:
    """How the dashboard's links name a task: by the client's own id within its tenant; an admin looking
    at another tenant's task, by its upstream id (domain/tenants.py), which only an admin resolves."""
    return client_id(external_task_id, tenant) if current_scope().tenant == tenant else external_task_id


def _page_ref(task: Task) -> str:
    return task_ref_for(task.external_task_id, task.tenant)


def _input_link(task_ref: str) -> InputLink:
    def link(index: int, thumbnail: bool) -> str:
        endpoint = ".task_input_thumbnail" if thumbnail else ".task_input"
        return url_for(endpoint, task_ref=task_ref, index=index)

    return link


def _archived_input(
    task_ref: str, index: int, slots_of: SlotsOf = image_slots, what: str = "image"
) -> dict[str, Any]:
    """The reference to the request's `index`-th image (in image_slots order; or audio, in audio_slots
    order), if it is archived."""
    store = services().store
    task = store.find(task_ref, current_scope())
    slots = list(slots_of((task and store.request(task.external_task_id)) or {}))
    ref = reference(slots[index].value) if index < len(slots) else None
    if ref is None:
        abort(404, f"No archived {what} {index} in the request of {task_ref!r}.")
    return ref


def _archived_file(ref: dict[str, Any], what: str) -> ResponseReturnValue:
    """An archived input as the client sent it: the file, or a presigned link (S3)."""
    storage = services().storage
    path = storage.local_path(ref[REFERENCE_KEY])
    if path is None:
        return redirect(storage.presigned_url(ref[REFERENCE_KEY], tasks_api.PRESIGNED_URL_TTL_S) or "")
    if not path.is_file():
        abort(404, f"The {what} is missing from the archive.")
    mime = ref.get("content_type") or "application/octet-stream"
    return send_file(path, mimetype=mime, conditional=True, download_name=path.name)


@bp.get("/tasks/<path:task_ref>/inputs/<int:index>")
def task_input(task_ref: str, index: int) -> ResponseReturnValue:
    """The request's image as the client sent it, from the archive."""
    return _archived_file(_archived_input(task_ref, index), "image")


@bp.get("/tasks/<path:task_ref>/audio/<int:index>")
def task_audio(task_ref: str, index: int) -> ResponseReturnValue:
    """The request's audio (a lip-sync's) as the client sent it, from the archive, for the page's player."""
    return _archived_file(_archived_input(task_ref, index, audio_slots, "audio"), "audio")


@bp.get("/tasks/<path:task_ref>/inputs/<int:index>/thumbnail")
def task_input_thumbnail(task_ref: str, index: int) -> ResponseReturnValue:
    picture = thumbnail(services().storage, _archived_input(task_ref, index))
    if picture is None:
        abort(404, "This image has no thumbnail; the original is linked beside it.")
    return Response(picture, mimetype="image/jpeg")


@bp.get("/deliveries")
def deliveries_page() -> str:
    raw = request.args.get("status", DeliveryStatus.FAILED.value)
    status = DeliveryStatus(raw) if raw in {s.value for s in DeliveryStatus} else None
    start = _start_arg()
    found = deliveries().list(
        status=status, offset=start, limit=DELIVERIES_PER_PAGE + 1, scope=current_scope()
    )
    now = now_ms()
    return render_template(
        "dashboard/deliveries.html",
        deliveries=found[:DELIVERIES_PER_PAGE],
        next_start=start + DELIVERIES_PER_PAGE if len(found) > DELIVERIES_PER_PAGE else None,
        start=start,
        status=status.value if status else "all",
        statuses=[s.value for s in DeliveryStatus],
        replayable=REPLAYABLE,
        system=system_state(services()),
        now=now,
        refresh=REFRESH_S if _moving(found, now) else None,
    )


@bp.post("/deliveries/<delivery_id>/replay")
def replay_one(delivery_id: str) -> ResponseReturnValue:
    try:
        delivery = deliveries().replay(delivery_id, current_scope())
    except NotReplayable as error:
        flash(str(error), "error")
    else:
        if delivery is None:
            flash(f"There is no delivery {delivery_id}.", "error")
        else:
            log.info("dashboard: replayed delivery %s", delivery_id)
            flash(f"Replaying {delivery.event_type} to {delivery.view()['target']}.", "ok")
    return redirect(_safe_next(request.form.get("next"), url_for(".deliveries_page")))


@bp.post("/deliveries/replay")
def replay_since() -> ResponseReturnValue:
    since = request.form.get("since", "")
    raw_status = request.form.get("status", DeliveryStatus.FAILED.value)
    status = DeliveryStatus.SKIPPED if raw_status == DeliveryStatus.SKIPPED.value else DeliveryStatus.FAILED
    try:
        since_ms = parse_since(since)
    except ValueError as error:
        flash(str(error), "error")
    else:
        replayed, refused = deliveries().replay_since(since_ms, status, current_scope())
        log.info("dashboard: replayed %d %s deliveries since %s", len(replayed), status, since)
        noun = "delivery" if len(replayed) == 1 else "deliveries"
        flash(f"Replaying {len(replayed)} {status.value} {noun}.", "ok")
        for delivery_id, why in refused.items():
            flash(f"Not replayed {delivery_id}: {why}", "error")
    return redirect(url_for(".deliveries_page", status=status.value))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    svc = services()
    target = _safe_next(request.values.get("next"), url_for(".index"))
    if not client_auth_required(svc.settings, svc.clients) or (
        request.method == "GET" and operator.signed_in(svc)
    ):
        return redirect(target)
    if request.method == "POST":
        limit = FailedAuthLimit(svc.redis, svc.keys)
        try:
            limit.check(request.remote_addr)
        except TooManyFailures as refused:
            log.warning("dashboard: sign-in refused, too many failures from %s", request.remote_addr)
            message = (
                f"Too many failed sign-ins from this address. Try again in {refused.retry_after_s} seconds."
            )
            page = render_template("dashboard/login.html", error=message, next=target)
            return page, 429, {"Retry-After": str(refused.retry_after_s)}
        try:
            operator.sign_in(svc, request.form.get("credential", "").strip())
        except ApiError as error:
            limit.record_failure(request.remote_addr)
            log.warning("dashboard: sign-in refused (%s) from %s", error.code, request.remote_addr)
            return render_template("dashboard/login.html", error=error.message, next=target), 401
        log.info("dashboard: signed in from %s", request.remote_addr)
        return redirect(target)
    return render_template("dashboard/login.html", error=None, next=target)


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Any:
    """GET asks (a link or a prefetch must not sign anyone out); POST, with its CSRF token, does it."""
    if request.method == "GET":
        return render_template("dashboard/logout.html")
    operator.sign_out(services())
    flash("Signed out.", "ok")
    return redirect(url_for(".login"))
