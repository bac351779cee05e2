"""`flask simulator`: the Kling simulator, accepting this service's own Kling credentials."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from webhook_service.cli.common import services


@click.command("simulator")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=9100, show_default=True)
@with_appcontext
def simulator(host: str, port: int) -> None:
    """Serve the Kling simulator, accepting this service's Kling credentials, until Ctrl-C.

    Point KLING_API_BASE at it (http://HOST:PORT) and add 127.0.0.1 to DOWNLOAD_ALLOWED_HOSTS.
    """
    from kling_simulator.__main__ import main

    settings = services().settings
    credentials = ["--token", settings.kling_api_token] if settings.kling_api_token else []
    if settings.kling_access_key:
        credentials = ["--access-key", settings.kling_access_key, "--secret-key", settings.kling_secret_key]
    main(["--host", host, "--port", str(port), *credentials])
