"""The domain: tasks and their one state machine, the store, admission and submission, reconciliation,
the archive, events. It imports no web code: the web app, the CLI and the RQ workers all call it with a
`Services` they built.
"""
