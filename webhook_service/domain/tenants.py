"""Tenants: the teams that share one service and one Kling account, each seeing only its own tasks.

A client key belongs to a tenant (config.py's SERVICE_API_KEYS and SERVICE_ADMIN_KEYS, or a managed
client). What a caller may see is its `Scope`: its tenant's objects, or, for an admin, everyone's.

Two tenants may both use `external_task_id` `job-1`, but Kling needs one id per account. So the service
records and sends each task under its *upstream id*: the client's own id for the `default` tenant
(exactly as before tenants existed, so nothing stored changes meaning), `<tenant>~<id>` for any other.
`~` is reserved in client ids (validation refuses it) and tenant names cannot contain it, so no two
(tenant, id) pairs share an upstream id. Clients only ever see their own id back. What a tenant name
may be is tenant_names.py's rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from webhook_service.tenant_names import DEFAULT_TENANT as DEFAULT_TENANT
from webhook_service.tenant_names import valid_name

SEPARATOR = "~"


def upstream_id(tenant: str, client_id: str) -> str:
    """The id the service stores a tenant's task under and sends to Kling as `external_task_id`."""
    return client_id if tenant == DEFAULT_TENANT else f"{tenant}{SEPARATOR}{client_id}"


def tenant_of(external_task_id: str) -> str:
    """The tenant an upstream id belongs to (a record that has lost its tenant field is read by this)."""
    tenant, separator, _rest = external_task_id.partition(SEPARATOR)
    return tenant if separator and valid_name(tenant) else DEFAULT_TENANT


def client_id(external_task_id: str, tenant: str) -> str:
    """The id the tenant's client chose: the upstream id without the tenant's prefix."""
    prefix = f"{tenant}{SEPARATOR}"
    if tenant != DEFAULT_TENANT and external_task_id.startswith(prefix):
        return external_task_id[len(prefix) :]
    return external_task_id


def with_client_ids(value: Any, tenant: str) -> Any:
    """`value` (JSON: a history entry, a body Kling sent) with the tenant's upstream ids shown as its
    client's own, at any depth and inside longer strings (Kling's messages may quote the id).

    What Kling says about a task names it by the upstream id the service sent (`team-a~job-1`); shown to
    a client as it came, it would tell the client an id it never chose and another tenant's naming
    scheme. The default tenant's ids are sent unchanged, so its values come back as they are.
    """
    if tenant == DEFAULT_TENANT:
        return value
    prefix = f"{tenant}{SEPARATOR}"
    # Not where the prefix ends a longer tenant's name: `myteam-a~job-1` is no id of team-a's.
    pattern = re.compile(rf"(?<![a-z0-9_-]){re.escape(prefix)}")
    return _without_prefix(value, prefix, pattern)


def _without_prefix(value: Any, prefix: str, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub("", value) if prefix in value else value
    if isinstance(value, list):
        return [_without_prefix(item, prefix, pattern) for item in value]
    if isinstance(value, dict):
        return {key: _without_prefix(item, prefix, pattern) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class Scope:
    """Whose objects a caller may see and act on: its tenant's, or every tenant's for an admin."""

    tenant: str = DEFAULT_TENANT
    admin: bool = False

    def sees(self, tenant: str) -> bool:
        return self.admin or tenant == self.tenant

    def candidates(self, ref: str) -> list[str]:
        """The upstream ids a client's reference may mean: its own tenant's id first; an admin may also
        name any tenant's task by its upstream id (`team-a~job-1`)."""
        own = upstream_id(self.tenant, ref)
        return [own, ref] if self.admin and ref != own else [own]


# The operator's own tools (the CLI on the server, the workers) act for everyone.
EVERYONE = Scope(admin=True)
