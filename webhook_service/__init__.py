"""Kling webhook service: a drop-in front for Kling's generation API.

The layers, each importing only itself and those below it (tests/test_architecture.py holds them):

    web/, cli/        Flask: the app factory, blueprints, callback endpoint, dashboard; `flask` commands
    domain/, notify/, services.py
                      tasks and their state machine, the store, submission, reconciliation, the archive,
                      events and their delivery; no web code. services.py, the one object holding every
                      store and client, built once per process, is of this layer: it builds the
                      domain's stores, and the domain's jobs take what it built
    integrations/     Kling's API, the archive's storage, downloads, outbound HTTP, logs, metrics
    config.py, jobs.py
                      settings, checked before anything starts; every RQ queue and job
    keys.py, redaction.py, replies.py, config_values.py, tenant_names.py, event_types.py, dev_env.py
                      every Redis key, shown URLs, Redis replies, how a setting is read, tenant names and
                      the default tenant, the events' names, the settings a running scripts/up made

`workers/` (beside this package, at the web's rank, importing none of it) holds the thin RQ entry points.
"""

__version__ = "0.2.0"
