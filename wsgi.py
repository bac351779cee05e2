"""The WSGI entry point gunicorn serves (see gunicorn.conf.py and the Procfile)."""

import logging

from webhook_service import create_app
from webhook_service.config import ConfigError

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

try:
    app = create_app()
except ConfigError as error:
    raise SystemExit(f"configuration error: {error}") from None
