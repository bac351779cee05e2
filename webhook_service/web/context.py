"""Where a Flask app keeps its `Services`: put there by `create_app`, read by every request and command."""

from __future__ import annotations

from flask import Flask, current_app

from webhook_service.services import Services

EXTENSION = "webhook_service"


def install(app: Flask, services: Services) -> None:
    app.extensions[EXTENSION] = services


def services_of(app: Flask) -> Services:
    services: Services = app.extensions[EXTENSION]
    return services


def current_services() -> Services:
    """The Services of the Flask app serving the current request or CLI command."""
    return services_of(current_app)
