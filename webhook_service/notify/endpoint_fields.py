"""An endpoint's fields as a client sends them (`POST` and `PATCH /v1/endpoints`), checked all at once.

A URL comes from a client, so it is untrusted: it passes the SSRF guard here, when it is registered (an
internal address, or localhost, is refused at once unless its host is in NOTIFY_ALLOWED_HOSTS), and
again at every delivery (the address actually connected to must be public).
"""

from __future__ import annotations

import math
from typing import Any

from webhook_service.domain.events import EVENT_TYPES
from webhook_service.domain.validation import FieldProblem, RequestInvalid, is_http_url
from webhook_service.integrations.outbound import refusal_of_url

URL_MAX = 2048
DESCRIPTION_MAX = 200
RATE_LIMIT_MAX = 1000.0
FIELDS = ("url", "event_types", "description", "rate_limit_per_s")


def checked(body: dict[str, Any], allowed_hosts: frozenset[str], *, creating: bool) -> dict[str, Any]:
    """The fields of a create (`creating`) or a change, checked; RequestInvalid lists every problem."""
    known = FIELDS if creating else (*FIELDS, "enabled")
    problems = [FieldProblem(name, "unknown_field", "is not a field") for name in body if name not in known]
    if creating and "url" not in body:
        problems.append(FieldProblem("url", "missing", "is required"))
    for name, value in body.items():
        if name in known and (why := _problem(name, value, allowed_hosts)):
            problems.append(FieldProblem(name, *why))
    if problems:
        raise RequestInvalid(problems)
    return {name: body[name] for name in known if name in body}


def _problem(name: str, value: Any, allowed_hosts: frozenset[str]) -> tuple[str, str] | None:
    if name == "url":
        if not isinstance(value, str) or len(value) > URL_MAX or not is_http_url(value):
            return "format", f"must be an http or https URL with a host, at most {URL_MAX} characters"
        if why := refusal_of_url(value, allowed_hosts):
            return "blocked_address", f"points at a {why} address, which the service never calls"
    elif name == "event_types":
        if value is not None and not (isinstance(value, list) and all(v in EVENT_TYPES for v in value)):
            return "enum", f"must be a list of: {', '.join(EVENT_TYPES)} (null or empty: every one)"
    elif name == "description":
        if not isinstance(value, str) or len(value) > DESCRIPTION_MAX:
            return "type", f"must be a string of at most {DESCRIPTION_MAX} characters"
    elif name == "rate_limit_per_s":
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if value is not None and not (number and 0 < value <= RATE_LIMIT_MAX and math.isfinite(value)):
            return "range", f"must be null (no limit) or a number above 0, at most {RATE_LIMIT_MAX:g}"
    elif name == "enabled" and not isinstance(value, bool):
        return "type", "must be true or false"
    return None
