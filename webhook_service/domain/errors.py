"""The domain's exceptions: what a caller may be told, whatever it serves (HTTP, the CLI, a job).

    ServiceError
    ├── TaskExists            an external_task_id already taken
    ├── TaskNotFound          no such task (or no longer)
    ├── TaskIdConflict        a callback names another task's id
    ├── UnknownCallbackShape  JSON, but neither of Kling's callback shapes
    ├── RequestInvalid        a create body that breaks Kling's rules (domain/validation.py)
    └── NotReplayable         a delivery that cannot be sent again now

The web layer maps them to HTTP (web/errors.py); none of them knows a status code. Kling's own
answers have their hierarchy in integrations/kling/errors.py.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the domain raises on purpose."""


class TaskExists(ServiceError):
    """A task with this external_task_id is already recorded."""


class TaskNotFound(ServiceError, LookupError):
    """No task with this id is recorded."""


class TaskIdConflict(ServiceError):
    """News for one task that names an id belonging to another: a mistake somewhere, refused loudly."""


class UnknownCallbackShape(ServiceError, ValueError):
    """The body is JSON but neither of Kling's two callback shapes."""


class NotReplayable(ServiceError):
    """The delivery is pending or delivered, or its endpoint is disabled."""
