"""The baseline of bench/callback_ingest.py: a Flask app that does nothing but answer 200.

Served by the same `gunicorn -c gunicorn.conf.py` as the service (same workers, threads and access
log), so the gap between the two is what the service's own work on a callback costs: token, signature,
JSON, Redis. It reads the body, as anything that answers a POST must.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

app = Flask(__name__)


@app.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@app.post("/callbacks/kling")
def callback() -> Response:
    request.get_data(cache=False)
    return jsonify({"code": 0, "message": "OK"})
