"""The baselines of bench/callback_ingest.py: Flask apps that do (almost) nothing but answer 200.

Served by the same `gunicorn -c gunicorn.conf.py` as the service (same workers, threads and access
log), so the gap between them and the service is what the service's own work on a callback costs:
token, signature, JSON, Redis. They read the body, as anything that answers a POST must.

- `app`: the issue's baseline, a bare Flask app.
- `app_with_redis`: the same plus one Redis GET per callback (a task record, through redis-py with the
  service's client settings): the floor of any design that records a callback before answering it.
"""

from __future__ import annotations

import os

import redis
from flask import Flask, Response, jsonify, request

app = Flask(__name__)
app_with_redis = Flask(__name__)
_redis = redis.Redis.from_url(
    os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    socket_connect_timeout=2,
    socket_timeout=5,
    health_check_interval=30,
)


@app.get("/healthz")
@app_with_redis.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@app.post("/callbacks/kling")
def callback() -> Response:
    request.get_data(cache=False)
    return jsonify({"code": 0, "message": "OK"})


@app_with_redis.post("/callbacks/kling")
def callback_read_once() -> Response:
    request.get_data(cache=False)
    _redis.get("kws:task:ingest-000000")
    return jsonify({"code": 0, "message": "OK"})
