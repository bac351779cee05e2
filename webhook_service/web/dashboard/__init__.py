"""The operator's dashboard: server-rendered pages at `/` for tasks, deliveries, the system's health,
usage and webhook endpoints.

Sign-in takes the same client credentials as the API (a client key or a client JWT), checked by the
same code and under the same failed-authentication limit, and shows what that credential's API calls
would: its tenant's tasks and deliveries, or everyone's for an admin. It keeps the operator in
Flask's signed session cookie (HttpOnly, SameSite=Lax) with a session id that Redis keeps until logout
or the absolute lifetime (session.py). Only the dashboard's routes accept that cookie, and only they
check CSRF tokens: the JSON API and Kling's callbacks authenticate every request by header or token,
so a browser cannot be tricked into making them, and they need no CSRF token. With no client
credentials configured, the dashboard is open, as the API is, and says so on every page.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import redis
from flask import Flask, Response, g, render_template, request, url_for
from flask import redirect as redirect_to
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from webhook_service.integrations.redis_config import RedisDurability
from webhook_service.notify.render import shorten
from webhook_service.web.auth import client_auth_required
from webhook_service.web.context import current_services as services
from webhook_service.web.context import services_of
from webhook_service.web.dashboard import present
from webhook_service.web.dashboard import session as operator
from webhook_service.web.dashboard.endpoints_page import endpoints_page, rotate_secret, send_test, set_enabled
from webhook_service.web.dashboard.listing import RequestSummaries
from webhook_service.web.dashboard.usage_page import usage_page
from webhook_service.web.dashboard.views import bp

__all__ = ["bp", "init_app"]

log = logging.getLogger(__name__)

# Of inactivity: each page view renews the cookie. The absolute lifetime, from sign-in however active,
# is session.py's SESSION_ABSOLUTE_LIFETIME_S, kept in Redis where logout can end it.
SESSION_IDLE_LIFETIME = timedelta(hours=2)
PUBLIC_ENDPOINTS = frozenset({"dashboard.login", "dashboard.static"})
# Images come from this service only: a client's image URL is shown as a link, never loaded, so
# opening a task never tells a third party who looked at it, or when. Videos play from the service's own
# URL, which may redirect to the archive's presigned S3 link.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; media-src 'self' http: https:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

csrf = CSRFProtect()

for _filter in (
    present.age,
    present.clock,
    present.filesize,
    present.history_detail,
    present.history_label,
    present.pretty,
    shorten,  # notify/render.py's: the notifications shorten text the same way
    present.span,
):
    bp.add_app_template_filter(_filter)
bp.add_url_rule("/usage", view_func=usage_page)
bp.add_url_rule("/endpoints", view_func=endpoints_page)
bp.add_url_rule("/endpoints/<endpoint_id>/enabled", view_func=set_enabled, methods=["POST"])
bp.add_url_rule("/endpoints/<endpoint_id>/rotate-secret", view_func=rotate_secret, methods=["POST"])
bp.add_url_rule("/endpoints/<endpoint_id>/test", view_func=send_test, methods=["POST"])


def init_app(app: Flask) -> None:
    """Serve the dashboard from `app`, with its session cookie and CSRF settings."""
    svc = services_of(app)
    app.config.update(
        WTF_CSRF_CHECK_DEFAULT=False,  # checked by the dashboard's own hook, below: its forms only
        WTF_CSRF_TIME_LIMIT=None,  # a token lasts as long as the session that holds it
        SESSION_COOKIE_NAME="kws_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=svc.settings.public_base_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=SESSION_IDLE_LIFETIME,
    )
    csrf.init_app(app)
    app.extensions["dashboard_summaries"] = RequestSummaries(svc.store)
    app.register_blueprint(bp)


@bp.before_request
def gate() -> ResponseReturnValue | None:
    """Sign-in first (except for the login page and the stylesheet), then the CSRF token of any POST."""
    scope = operator.signed_in(services())
    if scope is not None:
        g.scope = scope  # what every page shows: its tenant's objects, or everyone's for an admin
    elif request.endpoint not in PUBLIC_ENDPOINTS:
        path = request.full_path.rstrip("?")
        return redirect_to(url_for("dashboard.login", next=path))
    csrf.protect()
    return None


@bp.after_request
def security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"  # no replay button clicked through someone's frame
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "dashboard.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.context_processor
def page_context() -> dict[str, object]:
    return {
        "open_mode": _open_mode(),
        "redis_promises": _redis_promises(),
        "scope": g.get("scope"),
    }


def _open_mode() -> bool:
    """For the warning on every page of an open service; not shown when Redis cannot say (the page
    that says Redis is down is rendered with this too, and must not fail on it)."""
    try:
        return not client_auth_required(services().settings, services().clients)
    except redis.RedisError:
        return False


def _redis_promises() -> RedisDurability | None:
    """For the banner that says Redis keeps nothing on disk, or may evict; None when Redis is down (the
    page says so itself). The reading is the one /readyz uses, at most half a minute old."""
    try:
        return services().durability.current()
    except redis.RedisError:
        return None


def _error_page(status: int, title: str, message: str) -> tuple[str, int]:
    return render_template("dashboard/error.html", title=title, message=message), status


@bp.errorhandler(CSRFError)
def csrf_refused(error: CSRFError) -> tuple[str, int]:
    return _error_page(
        400,
        "This form cannot be accepted",
        f"{error.description} Forms must come from a dashboard page: go back, reload it and try again.",
    )


@bp.errorhandler(404)
def not_found(error: HTTPException) -> tuple[str, int]:
    return _error_page(404, "Not found", error.description or "There is nothing here.")


@bp.errorhandler(redis.RedisError)
def storage_unavailable(error: redis.RedisError) -> tuple[str, int]:
    log.error("dashboard: Redis unavailable: %s", type(error).__name__)
    return _error_page(503, "Redis is unavailable", "The service cannot reach Redis. Try again shortly.")
