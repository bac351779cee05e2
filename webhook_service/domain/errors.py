"""The domain's exceptions: what a caller may be told, whatever it serves (HTTP, the CLI, a job).

    ServiceError
    ├── TaskExists            an external_task_id already taken
    ├── TaskNotFound          no such task (or no longer)
    ├── TaskIdConflict        a callback names another task's id
    ├── UnknownCallbackShape  JSON, but neither of Kling's callback shapes
    ├── RequestInvalid        a create body that breaks Kling's rules (domain/validation.py)
    ├── InputsNotStored       the archive did not take a request's Base64 images: nothing recorded
    ├── InputUnreadable       a recorded task's archived image cannot be read back to send upstream
    ├── NotReplayable         a delivery that cannot be sent again now
    ├── ClientExists          a managed client of that name already exists
    └── ClientNotFound        no managed client of that name

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


class InputsNotStored(ServiceError):
    """The archive refused a request's Base64 image; the task was not recorded and may be sent again."""


class InputUnreadable(ServiceError):
    """A task's archived image is gone or altered (final), or the archive did not answer (`retryable`).

    Shaped like a Kling error (`message`, `retryable`, `as_dict`) because it ends a create the same way;
    no HTTP status or Kling code, since Kling never answered.
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable

    def as_dict(self) -> dict[str, object]:
        return {"http_status": None, "code": None, "message": self.message, "retryable": self.retryable}


class NotReplayable(ServiceError):
    """The delivery is pending or delivered, or its endpoint is disabled."""


class ClientExists(ServiceError):
    """A managed client of this name exists already (domain/clients.py): rotate or revoke it instead."""


class ClientNotFound(ServiceError, LookupError):
    """No managed client of this name (it was never created, or was revoked)."""
