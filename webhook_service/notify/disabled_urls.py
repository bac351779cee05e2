"""URLs disabled after answering 410 Gone, each for its owner alone: the hash `notify:disabled-endpoints`.

A receiver's 410 speaks for whoever sent to it: another tenant whose tasks call back to the same URL (a
shared receiver, a gateway in front of several pipelines) has been told nothing, and must not lose its
deliveries, nor find them skipped by a rule it can neither see nor lift. So an entry is kept per owner
and URL: a task's `callback_url` under the task's tenant (field `tenant:<name> <url>`), the operator's
webhooks and Slack from the environment under the operator (field `operator <url>`). A tenant sees and
enables its own entries, and only those; an admin (and, with no client credentials configured, any
caller: an open API's scope is an admin's) every one. The operator's sinks are not the `default`
tenant's: a plain `default` key is a client like any other, and must not list the operator's webhook
URLs nor turn back on a sink the operator's receiver asked to stop.

Entries written before owners were kept by their URL alone (field: the URL, which never holds `operator `
or `tenant:` before a space, since it starts with its scheme). They are read where they are, owned as
their value says, so nothing has to be moved while processes of both versions run: a `tenant` name, that
tenant's; `tenant` null, the operator's; no `tenant` at all (written before tenants, when every task was
the default tenant's), the default tenant's and the operator's: it still stops both, and since nothing in
it says which it was, only an admin lists and enables it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook_service.domain.tenants import DEFAULT_TENANT, Scope
from webhook_service.notify.records import Delivery, endpoint_id
from webhook_service.notify.sinks import Attempt
from webhook_service.redaction import shown_url
from webhook_service.replies import text

OPERATOR = "operator"
_TENANT = "tenant:"


def owner(tenant: str | None) -> str:
    """The owner of a tenant's entries (`tenant:<name>`), or the operator's (`tenant` None)."""
    return OPERATOR if tenant is None else f"{_TENANT}{tenant}"


def owner_of(delivery: Delivery) -> str:
    """A task's callback_url is its tenant's; the operator's sinks are nobody's tenant's."""
    return owner(delivery.tenant if delivery.client else None)


def fields(delivery: Delivery) -> list[str]:
    """The fields that may stop `delivery`: its owner's entry, and an entry from before owners."""
    return [f"{owner_of(delivery)} {delivery.target}", delivery.target]


def stops(delivery: Delivery, values: Sequence[bytes | str | None]) -> bool:
    """Whether the values read for `fields(delivery)` stop it: its owner's entry, or an older entry
    whose value names the same owner."""
    own, older = values
    return own is not None or (older is not None and owner_of(delivery) in _older_owners(json.loads(older)))


def entry(delivery: Delivery, attempt: Attempt) -> tuple[str, str]:
    """The field and value that disable the delivery's URL for its owner, from its 410 attempt."""
    why = {
        "disabled_at": attempt.at,
        "status_code": attempt.status_code,
        "delivery_id": delivery.id,
        "tenant": delivery.tenant if delivery.client else None,
    }
    return f"{owner_of(delivery)} {delivery.target}", json.dumps(why)


@dataclass(frozen=True)
class Entry:
    field: str
    url: str
    owners: frozenset[str]
    why: dict[str, Any]

    def visible(self, scope: Scope) -> bool:
        """An admin's, or its one owner's: an entry the operator may own (its own, or one from before
        tenants) is an admin's alone."""
        return scope.admin or self.owners == {owner(scope.tenant)}

    def view(self) -> dict[str, Any]:
        tenant = self.why.get("tenant", DEFAULT_TENANT)  # no tenant: from before tenants, the default's
        return {"endpoint": endpoint_id(self.url), "url": shown_url(self.url), **self.why, "tenant": tenant}

    def named(self, name: str) -> bool:
        """Named by its URL or its `ep_...` id."""
        return name in (self.url, endpoint_id(self.url))


def read(hash_items: Mapping[bytes | str, bytes | str]) -> list[Entry]:
    """Every entry of the hash, as HGETALL answers it."""
    found = []
    for raw_field, raw in hash_items.items():
        field, why = text(raw_field), json.loads(raw)
        prefix, _, url = field.partition(" ")
        if url and (prefix == OPERATOR or prefix.startswith(_TENANT)):
            found.append(Entry(field, url, frozenset({prefix}), why))
        else:
            found.append(Entry(field, field, _older_owners(why), why))
    return found


def _older_owners(why: dict[str, Any]) -> frozenset[str]:
    if "tenant" not in why:
        return frozenset({owner(DEFAULT_TENANT), OPERATOR})
    return frozenset({owner(why["tenant"])})
