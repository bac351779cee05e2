"""The simulator's Flask app: Kling's task endpoints (the video types, image generations, virtual
try-on, multi-image to image, image expansion), the result files and the `/_sim` control API."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request, send_file
from werkzeug.exceptions import HTTPException

from .auth import Auth
from .files import files_blueprint
from .images import TINY_PNG
from .state import SimError, SimState
from .tasks import TASK_TYPES
from .unified import unified_blueprint

SAMPLE_VIDEO = Path(__file__).parent / "static" / "sample.mp4"
# Kling's own hosts serve /v1/...; the gateways put the same API under /kling/v1/...
API_PREFIXES = ("", "/kling")


def envelope(http: int, code: int, message: str, data: Any = None) -> tuple[Response, int]:
    body: dict[str, Any] = {"code": code, "message": message, "request_id": str(uuid.uuid4())}
    if data is not None:
        body["data"] = data
    return jsonify(body), http


def ok(data: Any) -> tuple[Response, int]:
    return envelope(200, 0, "SUCCEED", data)


def _api_blueprint(state: SimState, auth: Auth, public_url: str | None) -> Blueprint:
    bp = Blueprint("kling", __name__)

    @bp.before_request
    def authenticate() -> tuple[Response, int] | None:
        failure = auth.check(request.headers.get("Authorization"))
        return envelope(401, *failure) if failure else None

    def create(task_type: str) -> tuple[Response, int]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return envelope(400, 1200, "request body must be a JSON object")
        for required in TASK_TYPES[task_type][1]:
            if (
                required == "prompt"
                and body.get("multi_shot") is True
                and body.get("shot_type") == "customize"
            ):
                continue  # kling-v3's multi-shot video: each shot has its own prompt in multi_prompt
            if not isinstance(body.get(required), str | list | dict) or not body[required]:
                return envelope(400, 1201, f"{required} is required")
        for key in ("external_task_id", "callback_url"):
            if body.get(key) is not None and not isinstance(body[key], str):
                return envelope(400, 1201, f"{key} must be a string")
        try:
            task, late_error = state.create(
                body, dict(request.headers), public_url or request.host_url, task_type
            )
        except SimError as exc:
            return envelope(exc.http, exc.code, exc.message)
        state.deliver_first(task)
        if late_error is not None:
            return envelope(late_error.http, late_error.code, late_error.message)
        return ok(task.created_object())

    def query(task_type: str, task_id: str) -> tuple[Response, int]:
        task = state.get(task_id)
        if task is None or task.task_type != task_type or task.unified:  # a unified one is at /tasks
            return envelope(404, 1203, f"task {task_id!r} not found")
        return ok(task.query_object())

    def list_tasks(task_type: str) -> tuple[Response, int]:
        try:
            page_num = int(request.args.get("pageNum", "1"))
            page_size = int(request.args.get("pageSize", "30"))
        except ValueError:
            return envelope(400, 1201, "pageNum and pageSize must be integers")
        if not (1 <= page_num <= 1000 and 1 <= page_size <= 500):
            return envelope(400, 1201, "pageNum must be in 1..1000 and pageSize in 1..500")
        return ok([task.query_object() for task in state.page(page_num, page_size, task_type)])

    @bp.post("/v1/videos/identify-face")
    def identify_face() -> tuple[Response, int]:
        """Synchronous, as at Kling: the faces at once, no task."""
        try:
            data = state.identify_face(request.get_json(silent=True), public_url or request.host_url)
        except SimError as exc:
            return envelope(exc.http, exc.code, exc.message)
        return ok(data)

    for task_type, (group, _) in TASK_TYPES.items():
        path, defaults = f"/v1/{group}/{task_type}", {"task_type": task_type}
        bp.add_url_rule(path, f"create_{task_type}", create, methods=["POST"], defaults=defaults)
        bp.add_url_rule(path, f"list_{task_type}", list_tasks, methods=["GET"], defaults=defaults)
        bp.add_url_rule(f"{path}/<task_id>", f"query_{task_type}", query, methods=["GET"], defaults=defaults)
    return bp


def _control_blueprint(state: SimState) -> Blueprint:
    """Unauthenticated knobs for the run command and manual use; tests use `SimState` directly."""
    bp = Blueprint("sim_control", __name__, url_prefix="/_sim")

    def configure(setter: Any, *args: str) -> tuple[Response, int]:
        try:
            setter(*args, request.get_json(silent=True))
        except ValueError as exc:
            return jsonify({"error": str(exc)}), 400
        return jsonify({"ok": True}), 200

    @bp.put("/default")
    def put_default() -> tuple[Response, int]:
        return configure(state.set_default)

    @bp.put("/scenarios/<external_task_id>")
    def put_scenario(external_task_id: str) -> tuple[Response, int]:
        return configure(state.set_scenario, external_task_id)

    @bp.get("/tasks")
    def get_tasks() -> Response:
        return jsonify(state.tasks())

    @bp.get("/callbacks")
    def get_callbacks() -> Response:
        entries = state.callbacks()
        return jsonify([dict(e, body=e["body"].decode()) for e in entries])

    @bp.post("/reset")
    def post_reset() -> Response:
        state.reset()
        return jsonify({"ok": True})

    return bp


def create_app(state: SimState, auth: Auth, public_url: str | None = None) -> Flask:
    """`public_url` is the base put into video URLs; by default the host the create request was sent to."""
    app = Flask(__name__)
    api = _api_blueprint(state, auth, public_url)
    unified = unified_blueprint(state, auth, public_url)
    for prefix in API_PREFIXES:
        app.register_blueprint(api, url_prefix=prefix or None, name=f"kling{prefix.replace('/', '_')}")
        app.register_blueprint(unified, url_prefix=prefix or None, name=f"unified{prefix.replace('/', '_')}")
    app.register_blueprint(_control_blueprint(state))
    app.register_blueprint(files_blueprint(state.files))

    @app.get("/files/<task_id>/<name>")
    def video_file(task_id: str, name: str) -> Response | tuple[Response, int]:
        task = state.get(task_id)
        if task is not None and task.task_id == task_id and name in task.image_names():
            return Response(TINY_PNG, mimetype="image/png")
        stem = name.removesuffix(".mp4")
        video_id = stem.removesuffix("_watermark") if stem != name else ""
        if task is None or task.task_id != task_id or video_id not in task.video_ids():
            return envelope(404, 1203, "file not found")
        return send_file(SAMPLE_VIDEO, mimetype="video/mp4", conditional=True)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        http = exc.code or 500
        code = {404: 1203, 405: 1202}.get(http, 5000 if http >= 500 else 1200)
        return envelope(http, code, exc.description or exc.name)

    return app
