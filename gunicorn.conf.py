"""gunicorn settings for the web process (`gunicorn -c gunicorn.conf.py wsgi:app`)."""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
timeout = 60
graceful_timeout = 20
accesslog = "-"
# %(U)s is the path without the query string: callback URLs carry their token in the query.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(D)sus'
