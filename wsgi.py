"""The WSGI entry point gunicorn serves (see gunicorn.conf.py and the Procfile)."""

from webhook_service.config import ConfigError
from webhook_service.integrations import logs
from webhook_service.web.app import create_app

logs.configure()

try:
    app = create_app()
except ConfigError as error:
    raise SystemExit(f"configuration error: {error}") from None
