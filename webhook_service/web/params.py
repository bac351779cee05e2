"""Query parameters of the service's own routes (/v1/tasks, /v1/deliveries, /v1/events, /v1/endpoints,
/v1/usage), read strictly and all at once: a bad value is never a 500 or a guess, a parameter the route
does not take is refused (a misspelt `sinse` would otherwise list everything, silently), and every
problem of the query comes back in one 400, summarised as a body's problems are (web/errors.py), so a
client fixes its query in one round trip.

A route names what it takes with `@takes(...)`. The blueprint's `check_query` hook (after
authentication) starts the request's `Query`, noting any parameter the route does not take, and
answers at once for a route that takes none; the others read their values through `query()` and end
with `done()`, which raises every problem found. The drop-in Kling routes do not use any of this: they
stay as lenient as Kling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import current_app, g, request

from webhook_service.domain.body_rules import HINT_CUTOFF, close_matches
from webhook_service.domain.problems import FieldProblem, RequestInvalid
from webhook_service.domain.usage import BadUsageQuery
from webhook_service.notify.event_log import BadEventQuery
from webhook_service.web.errors import invalid_request

T = TypeVar("T")
View = TypeVar("View", bound=Callable[..., Any])

_TAKES = "query_parameters"
SHOWN_MAX = 40  # of a value sent, in a message


def takes(*names: str) -> Callable[[View], View]:
    """Declare the query parameters a route takes; any other is refused."""

    def declare(view: View) -> View:
        setattr(view, _TAKES, frozenset(names))
        return view

    return declare


def check_query() -> None:
    """A blueprint's `before_request`: the request's Query, refused at once when the route takes none."""
    view = current_app.view_functions.get(request.endpoint or "")
    g.query = Query(getattr(view, _TAKES, frozenset()))
    if not g.query.known:
        g.query.done()


def query() -> Query:
    """The request's Query, which `check_query` started."""
    started: Query = g.query
    return started


class Query:
    """The request's query parameters as a route reads them, and every problem found on the way."""

    def __init__(self, known: frozenset[str]) -> None:
        self.known = known
        self.problems: list[FieldProblem] = [
            FieldProblem(name, "unknown_parameter", _unknown(name, known))
            for name in request.args
            if name not in known
        ]

    def text(self, name: str) -> str:
        """The value as sent; "" when absent."""
        return request.args.get(name, "")

    def integer(self, name: str, low: int, high: int, default: int) -> int:
        raw = request.args.get(name, str(default))
        if raw.isascii() and raw.isdigit() and low <= int(raw) <= high:  # "²".isdigit() too
            return int(raw)
        self.refuse(name, f"an integer from {low} to {high}; got {_shown(raw)}")
        return default

    def choice(self, name: str, choices: Iterable[str]) -> str:
        """One of `choices`, or "" when absent (or refused)."""
        raw, allowed = self.text(name), list(choices)
        if raw and raw not in allowed:
            self.refuse(name, f"one of {', '.join(allowed)}; got {_shown(raw)}")
            return ""
        return raw

    def parsed(self, name: str, parse: Callable[[str], T]) -> T | None:
        """`parse` of the value, None when absent; a ValueError it raises is the problem's message."""
        raw = self.text(name)
        if not raw:
            return None
        try:
            return parse(raw)
        except ValueError as error:
            self.refuse(name, str(error))
            return None

    def check(self, read: Callable[[], T]) -> T | None:
        """What `read` finds, or None when it refuses the query: a check of the domain's, which names
        the parameter itself (the event log's and usage's, which may need Redis or the caller)."""
        try:
            return read()
        except (BadEventQuery, BadUsageQuery) as error:
            self.refuse(error.field, str(error))
            return None

    def refuse(self, name: str, message: str, code: str = "invalid") -> None:
        self.problems.append(FieldProblem(name, code, message))

    def done(self) -> None:
        """Raise one 400 with every problem found, if there is any, in the order the query has them."""
        if self.problems:
            order = {name: n for n, name in enumerate(request.args)}
            ranked = sorted(self.problems, key=lambda problem: order.get(problem.field, len(order)))
            raise invalid_request(RequestInvalid(ranked), "invalid query")


def _unknown(name: str, known: frozenset[str]) -> str:
    hints = close_matches(name, sorted(known), HINT_CUTOFF)
    if hints:
        return "unknown parameter; did you mean " + " or ".join(f"'{hint}'" for hint in hints) + "?"
    if not known:
        return "unknown parameter; this route takes no query parameters"
    return f"unknown parameter; this route takes {', '.join(sorted(known))}"


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= SHOWN_MAX else raw[:SHOWN_MAX] + "...")
