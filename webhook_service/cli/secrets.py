"""`flask secrets reseal`: after SECRET_KEY changed, seal the stored secrets again under the new key.

The service keeps secrets it must read back (webhook endpoints' signing secrets, clients' JWT secret
keys) encrypted under keys derived from SECRET_KEY (domain/sealing.py). With the earlier key in
SECRET_KEY_FALLBACKS they are still read; this seals each again under the current key, so that the
earlier one can leave SECRET_KEY_FALLBACKS once the tasks open at the change are done (their callback
URLs are signed with it). Safe to run again, and while the service runs.
"""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from webhook_service.cli.common import guarded, services


@click.group()
def secrets() -> None:
    """The secrets the service stores, sealed under SECRET_KEY."""


@secrets.command("reseal")
@with_appcontext
@guarded
def reseal() -> None:
    """Seal every stored secret again under the current SECRET_KEY."""
    svc = services()
    endpoints = svc.endpoints.reseal()
    clients = svc.clients.reseal()
    click.echo(
        f"sealed again under the current SECRET_KEY: {endpoints} endpoint(s), {clients} JWT secret key(s)"
    )
