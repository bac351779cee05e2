"""Kling webhook service: a drop-in front for Kling's generation API.

The layers, each importing only those below it:

    web/, cli/        Flask: the app factory, blueprints, callback endpoint, dashboard; `flask` commands
    domain/, notify/  tasks and their state machine, the store, submission, reconciliation, the archive,
                      events and their delivery; no web code
    services.py       the one object holding every store and client, built once per process
    integrations/     Kling's API, the archive's storage, downloads, outbound HTTP, logs, metrics
    config.py, keys.py, jobs.py, redaction.py, replies.py
                      settings, every Redis key, every RQ queue and job, shown URLs, Redis replies

`workers/` (beside this package) holds the thin RQ entry points.
"""

__version__ = "0.2.0"
