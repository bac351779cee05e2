"""`/v1/deliveries`: what was sent where, the dead letters, and sending them again.

Also `flask replay-failed --since 2h`, for the operator who fixed a receiver and wants what it missed.
A replay sends the stored event again with the same `webhook-id`, so a receiver that already has it can
tell. URLs are shown without path or query: webhook URLs often carry their secret there.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import click
from flask import Blueprint, Flask, Response, jsonify, request

from webhook_service.auth import require_client
from webhook_service.errors import CODE_BAD_REQUEST, CODE_NOT_FOUND, ApiError, envelope
from webhook_service.lifecycle import current_services as services
from webhook_service.notify.deliveries import DeliveryStore
from webhook_service.notify.records import DeliveryStatus, NotReplayable
from webhook_service.tasks import now_ms

bp = Blueprint("deliveries", __name__, url_prefix="/v1/deliveries")

CODE_CONFLICT = 1201
LIMIT_MAX = 500
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def store() -> DeliveryStore:
    return DeliveryStore(services().redis)


@bp.before_request
def authenticate() -> None:
    require_client(services().settings)


def parse_since(value: str) -> int:
    """Epoch milliseconds from an ISO 8601 time (UTC unless it says otherwise) or a duration back from now
    (`90s`, `30m`, `2h`, `1d`, `1w`)."""
    value = value.strip()
    if match := _DURATION.fullmatch(value):
        try:
            return now_ms() - round(float(match[1]) * _UNIT_S[match[2]] * 1000)
        except OverflowError:  # a duration of hundreds of digits is infinite as a float
            raise ValueError(f"the duration {value!r} is too long") from None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected an ISO 8601 time or a duration like 30m, 2h, 1d; got {value!r}") from None
    return round((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)


def _bad(name: str, message: str) -> ApiError:
    return ApiError(
        400,
        CODE_BAD_REQUEST,
        f"{name}: {message}",
        errors=[{"field": name, "code": "invalid", "message": message}],
    )


def _status_arg(default: DeliveryStatus | None = None) -> DeliveryStatus | None:
    raw = request.args.get("status")
    if not raw:
        return default
    try:
        return DeliveryStatus(raw)
    except ValueError:
        raise _bad("status", f"one of {', '.join(DeliveryStatus)}") from None


def _since_arg(required: bool = False) -> int | None:
    raw = request.args.get("since")
    if not raw:
        if required:
            raise _bad("since", "required: an ISO 8601 time or a duration like 30m, 2h, 1d")
        return None
    try:
        return parse_since(raw)
    except ValueError as error:
        raise _bad("since", str(error)) from None


def _int_arg(name: str, low: int, high: int, default: int) -> int:
    raw = request.args.get(name, str(default))
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:  # "²".isdigit() too
        raise _bad(name, f"an integer from {low} to {high}")
    return int(raw)


@bp.get("")
def list_deliveries() -> Response:
    """Newest first; `?status=failed` lists the dead letters (by when they failed), `?since=` bounds it."""
    found = store().list(
        status=_status_arg(),
        since_ms=_since_arg(),
        task=request.args.get("task") or None,
        offset=_int_arg("offset", 0, 1_000_000, 0),
        limit=_int_arg("limit", 1, LIMIT_MAX, 50),
    )
    return jsonify(envelope(0, "SUCCEED", [delivery.view() for delivery in found]))


@bp.get("/<delivery_id>")
def get_delivery(delivery_id: str) -> Response:
    delivery = store().get(delivery_id)
    if delivery is None:
        raise ApiError(404, CODE_NOT_FOUND, f"no delivery {delivery_id!r}")
    return jsonify(envelope(0, "SUCCEED", {**delivery.view(), "attempt_log": store().attempts(delivery_id)}))


@bp.post("/<delivery_id>/replay")
def replay_one(delivery_id: str) -> Response:
    try:
        delivery = store().replay(delivery_id)
    except NotReplayable as error:
        raise ApiError(409, CODE_CONFLICT, str(error)) from None
    if delivery is None:
        raise ApiError(404, CODE_NOT_FOUND, f"no delivery {delivery_id!r}")
    return jsonify(envelope(0, "SUCCEED", delivery.view()))


@bp.post("/replay")
def replay_since() -> Response:
    """`?since=2h` (required) and `?status=failed` (default) or `skipped`."""
    status = _status_arg(DeliveryStatus.FAILED)
    if status not in (DeliveryStatus.FAILED, DeliveryStatus.SKIPPED):
        raise _bad("status", "failed or skipped")
    replayed, refused = store().replay_since(_since_arg(required=True) or 0, status)
    return jsonify(envelope(0, "SUCCEED", {"replayed": replayed, "not_replayed": refused}))


@bp.get("/disabled-endpoints")
def disabled_endpoints() -> Response:
    return jsonify(envelope(0, "SUCCEED", store().disabled_endpoints()))


@bp.delete("/disabled-endpoints/<endpoint>")
@bp.delete("/disabled-endpoints", defaults={"endpoint": None})
def enable_endpoint(endpoint: str | None) -> Response:
    """By the `ep_...` id the listing shows, or `?url=` with the whole URL."""
    name = endpoint or request.args.get("url", "")
    if not name or not store().enable(name):
        raise ApiError(404, CODE_NOT_FOUND, "no such disabled endpoint")
    return jsonify(envelope(0, "SUCCEED", {"enabled": True}))


def register_cli(app: Flask) -> None:
    @app.cli.command("replay-failed")
    @click.option("--since", required=True, help="ISO 8601 time, or a duration back from now: 30m, 2h, 1d.")
    @click.option(
        "--status",
        type=click.Choice(["failed", "skipped"]),
        default="failed",
        show_default=True,
        help="skipped: deliveries never sent because their endpoint was disabled.",
    )
    def replay_failed(since: str, status: str) -> None:
        """Send the deliveries that failed since a time again, with the same webhook-id."""
        try:
            since_ms = parse_since(since)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--since") from None
        connection = app.extensions["webhook_service"].redis
        replayed, refused = DeliveryStore(connection).replay_since(since_ms, DeliveryStatus(status))
        for delivery_id, why in refused.items():
            click.echo(f"not replayed {delivery_id}: {why}", err=True)
        click.echo(f"replayed {len(replayed)} {status} deliveries since {since}")
