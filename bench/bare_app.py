"""The baselines of bench/callback_ingest.py: apps that do (almost) nothing but answer 200.

Served by the same `gunicorn -c gunicorn.conf.py` as the service (same workers, threads and access
log), so the gap between them and the service is what the service's own work on a callback costs:
token, signature, JSON, the state machine in Redis. They read the body, as anything that answers a
POST must.

- `app`: the issue's baseline, a bare Flask app.
- `app_with_redis`: the floor. The callback path is answered in front of that app, as the service
  answers its callbacks (a WSGI middleware, webhook_service/callbacks.py), after one Redis GET of a
  task record through the service's own connection (its settings from the environment, through the
  sentinels when REDIS_SENTINELS is set): what any design pays that stores a callback before answering
  it. The service must: a 200 means the callback is in the task's history.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.wrappers import Request

from webhook_service.config import redis_settings
from webhook_service.services import redis_connection

app = Flask(__name__)
_redis = redis_connection(redis_settings(os.environ))
_OK = b'{"code":0,"message":"OK"}'


@app.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@app.post("/callbacks/kling")
def callback() -> Response:
    request.get_data(cache=False)
    return jsonify({"code": 0, "message": "OK"})


def app_with_redis(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") != "/callbacks/kling":
        return app(environ, start_response)
    Request(environ).get_data(cache=False)
    _redis.get("kws:task:ingest-000000")
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(_OK)))])
    return [_OK]
