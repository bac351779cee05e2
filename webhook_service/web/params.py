"""Query parameters read strictly: a bad one is a 400 whose `errors` names it, never a 500 or a guess."""

from __future__ import annotations

from flask import request

from webhook_service.web.errors import CODE_BAD_REQUEST, ApiError


def bad(name: str, message: str) -> ApiError:
    return ApiError(
        400,
        CODE_BAD_REQUEST,
        f"{name}: {message}",
        errors=[{"field": name, "code": "invalid", "message": message}],
    )


def int_arg(name: str, low: int, high: int, default: int) -> int:
    raw = request.args.get(name, str(default))
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:  # "²".isdigit() too
        raise bad(name, f"an integer from {low} to {high}")
    return int(raw)
