"""The names of the service's events: what NOTIFY_EVENTS and an endpoint's filter may list, what a
webhook's `type` says. They sit at the bottom of the layers, beside keys.py, because the settings
check NOTIFY_EVENTS against them before anything starts; domain/events.py says what raises each.
"""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    SUBMITTED = "task.submitted"
    PROCESSING = "task.processing"
    SUCCEEDED = "task.succeeded"
    FAILED = "task.failed"
    ARCHIVED = "task.archived"
    ARCHIVE_FAILED = "task.archive_failed"
    EXPIRED = "task.expired"


# Not about a task: an endpoint of a tenant was disabled (notify/disabling.py). It goes to the tenant's
# other endpoints and to the operator's sinks, each with its own filter, as task events do.
ENDPOINT_DISABLED = "endpoint.disabled"
EVENT_TYPES = (*(e.value for e in EventType), ENDPOINT_DISABLED)
