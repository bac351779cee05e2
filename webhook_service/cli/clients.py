"""`flask clients create|list|update|rotate|revoke`: clients' credentials and their tenants' share of the
submission queue, managed while the service runs, without a restart (domain/clients.py); and
`flask clients callback-secret`, a tenant's callback signing secret (notify/callback_signing.py).

A new key, access key and secret key are printed once, on stdout, and nothing else is, so a script
can capture them; what the command did is said on stderr. Only a hash of a key, and the secret key
encrypted, are kept: a lost one is replaced with `rotate`, never shown again.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

import click
from flask.cli import AppGroup

from webhook_service.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    CommandFailed,
    echo_json,
    echo_table,
    guarded,
    services,
    when,
)
from webhook_service.config import Settings
from webhook_service.domain import tenant_limits
from webhook_service.domain.clients import DEFAULT_GRACE_S, ClientInfo, Issued
from webhook_service.domain.clock import now_ms, parse_duration
from webhook_service.domain.errors import ClientExists, ClientNotFound
from webhook_service.domain.tenants import DEFAULT_TENANT
from webhook_service.notify.callback_signing import callback_secret
from webhook_service.tenant_names import NAME_RULE, valid_name

NO_LIMIT: Literal["none"] = "none"
MaxOpen = int | Literal["none"]


class MaxOpenType(click.ParamType[MaxOpen]):
    """A whole number of at least 1, or `none` (the tenant's own limit removed)."""

    name = "N|none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> MaxOpen:
        if str(value).strip().lower() == NO_LIMIT:
            return NO_LIMIT
        text = str(value).strip()
        if not text.isdigit() or int(text) < 1:
            self.fail(f"expected a whole number of at least 1, or none; got {value!r}", param, ctx)
        return int(text)


WEIGHT = click.option(
    "--weight",
    type=click.IntRange(min=1),
    help="The tenant's weight in the submission queue's round-robin (default 1).",
)
MAX_OPEN = click.option(
    "--max-open",
    type=MaxOpenType(),
    help="The most tasks the tenant may have upstream at once, all packs together; none: no own limit.",
)

clients = AppGroup(
    "clients",
    help="Create, list, update, rotate and revoke clients' credentials; print a tenant's callback secret.",
)


@clients.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="The client sees and acts on every tenant's tasks.")
@WEIGHT
@MAX_OPEN
@click.option("--jwt", "with_jwt", is_flag=True, help="Also an access key / secret key pair for JWTs.")
@guarded
def create(name: str, admin: bool, weight: int | None, max_open: MaxOpen | None, with_jwt: bool) -> None:
    """A new client for tenant NAME: prints its key (and AK/SK) once."""
    _check_name(name)
    try:
        issued = services().clients.create(name, admin=admin, with_jwt=with_jwt)
    except ClientExists as error:
        raise CommandFailed(str(error), EXIT_USAGE) from None
    _set_limits(name, weight, max_open)
    _print_secrets(issued)
    click.echo(
        f"client {name} created{' (admin: sees every tenant)' if admin else ''}; "
        "the secrets above are shown only this once",
        err=True,
    )


@clients.command("update")
@click.argument("name")
@WEIGHT
@MAX_OPEN
@guarded
def update(name: str, weight: int | None, max_open: MaxOpen | None) -> None:
    """Set tenant NAME's weight and max_open (a managed client's, or a tenant of the environment's keys)."""
    _check_name(name)
    if weight is None and max_open is None:
        raise click.UsageError("give --weight, --max-open or both")
    known = set(services().clients.names()) | _environment_tenants(services().settings)
    if name not in known:
        raise CommandFailed(
            f"no client or environment key has tenant {name!r} (known: {', '.join(sorted(known)) or 'none'})",
            EXIT_FAILED,
        )
    _set_limits(name, weight, max_open)
    click.echo(f"tenant {name} updated", err=True)


@clients.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@guarded
def list_clients(as_json: bool) -> None:
    """Managed clients, then the tenants of the environment's keys; never a key."""
    svc = services()
    limits = tenant_limits.all_limits(svc.redis, svc.keys)
    rows = [_managed_row(info, limits.get(info.name)) for info in svc.clients.describe()]
    rows += _environment_rows(svc.settings, limits)
    if as_json:
        echo_json(rows)
        return
    echo_table(
        [
            [
                row["name"],
                row["source"],
                "yes" if row["admin"] else "no",
                _shown(row["weight"]),
                _shown(row["max_open"]),
                when(row["created_at"]),
                _valid(row["keys"], row["keys_retiring_at"]),
                _valid(row["access_keys"], row["access_keys_retiring_at"]),
            ]
            for row in rows
        ],
        ["name", "source", "admin", "weight", "max_open", "created (UTC)", "keys", "jwt access keys"],
    )


@clients.command("rotate")
@click.argument("name")
@click.option(
    "--grace",
    default=f"{DEFAULT_GRACE_S // 3600}h",
    show_default=True,
    help="How long the keys (and with --jwt the AK/SK pairs) rotated out keep working, at most: 0s "
    "stops them at once (a leaked key).",
)
@click.option("--jwt", "with_jwt", is_flag=True, help="Rotate the access key / secret key pair too.")
@guarded
def rotate(name: str, grace: str, with_jwt: bool) -> None:
    """A new key for client NAME, printed once; the current one stops after the grace period."""
    try:
        grace_s = parse_duration(grace)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--grace") from None
    try:
        issued = services().clients.rotate(name, grace_s=grace_s, with_jwt=with_jwt)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--grace") from None
    except ClientNotFound as error:
        raise CommandFailed(str(error), EXIT_FAILED) from None
    _print_secrets(issued)
    previous = "keys and access keys" if with_jwt else "keys"
    ends = f"work until {when(now_ms() + round(grace_s * 1000))} UTC at the latest" if grace_s else "stopped"
    click.echo(f"client {name} rotated: its previous {previous} {ends}", err=True)


@clients.command("revoke")
@click.argument("name")
@click.option(
    "--leave-open",
    is_flag=True,
    help="Revoke the last client even though the API then needs no credentials at all.",
)
@guarded
def revoke(name: str, leave_open: bool) -> None:
    """Remove client NAME and every key and access key of it, at once."""
    svc = services()
    last = svc.clients.names() == [name] and not svc.settings.client_auth_enabled
    if last and not leave_open:
        raise CommandFailed(
            f"{name} is the last client and no client credentials are set in the environment: revoking it "
            "would open the API to anyone. Create another client first, or pass --leave-open",
            EXIT_USAGE,
        )
    environment = _environment_tenants(svc.settings)
    try:
        svc.clients.revoke(name, forget_limits=name not in environment)
    except ClientNotFound as error:
        raise CommandFailed(str(error), EXIT_FAILED) from None
    click.echo(
        f"client {name} revoked: its keys and access keys no longer work, and dashboard sessions "
        "signed in with them end on their next page",
        err=True,
    )


@clients.command("callback-secret")
@click.argument("name")
@guarded
def callback_secret_of(name: str) -> None:
    """Print the secret tenant NAME's callback_url deliveries are signed with, for its receivers."""
    _check_name(name)
    secret = callback_secret(services().settings.notify_webhook_secret, name)
    if not secret:
        raise CommandFailed(
            "NOTIFY_WEBHOOK_SECRET is not set: callback_url deliveries are sent unsigned", EXIT_FAILED
        )
    click.echo(secret)
    click.echo(
        f"the signing secret of tenant {name}'s callback_url deliveries (GET /v1/callback-secret with "
        "its key answers the same); it changes with NOTIFY_WEBHOOK_SECRET",
        err=True,
    )


def _check_name(name: str) -> None:
    if not valid_name(name):
        raise CommandFailed(f"{name!r} is not a valid client name: a name is {NAME_RULE}", EXIT_USAGE)


def _set_limits(tenant: str, weight: int | None, max_open: MaxOpen | None) -> None:
    svc = services()
    if weight is not None:
        tenant_limits.set_weight(svc.redis, svc.keys, tenant, weight)
    if max_open is not None:
        tenant_limits.set_max_open(
            svc.redis, svc.keys, tenant, max_open if isinstance(max_open, int) else None
        )


def _print_secrets(issued: Issued) -> None:
    click.echo(f"key: {issued.key}")
    if issued.access_key:
        click.echo(f"access key: {issued.access_key}")
        click.echo(f"secret key: {issued.secret_key}")


def _environment_tenants(settings: Settings) -> set[str]:
    found = {client.tenant for client in settings.client_keys}
    return found | {DEFAULT_TENANT} if settings.service_access_key else found


def _managed_row(info: ClientInfo, limits: tenant_limits.TenantLimits | None) -> dict[str, Any]:
    return {
        "name": info.name,
        "source": "managed",
        "admin": info.admin,
        "weight": limits.weight if limits else None,
        "max_open": limits.max_open if limits else None,
        "created_at": info.created_at,
        "keys": len(info.keys),
        "keys_retiring_at": sorted(end for end in info.keys if end is not None),
        "access_keys": len(info.access_keys),
        "access_keys_retiring_at": sorted(end for end in info.access_keys if end is not None),
    }


def _environment_rows(
    settings: Settings, limits: dict[str, tenant_limits.TenantLimits]
) -> list[dict[str, Any]]:
    """One row per tenant and admin flag of SERVICE_API_KEYS and SERVICE_ADMIN_KEYS (SERVICE_ACCESS_KEY
    is the default tenant's JWT): how many keys, never which."""
    keys = Counter((client.tenant, client.admin) for client in settings.client_keys)
    jwts = Counter({(DEFAULT_TENANT, False): 1} if settings.service_access_key else {})
    rows = []
    for tenant, admin in sorted(keys.keys() | jwts.keys()):
        own = limits.get(tenant)
        rows.append(
            {
                "name": tenant,
                "source": "environment",
                "admin": admin,
                "weight": own.weight if own else None,
                "max_open": own.max_open if own else None,
                "created_at": None,
                "keys": keys[(tenant, admin)],
                "keys_retiring_at": [],
                "access_keys": jwts[(tenant, admin)],
                "access_keys_retiring_at": [],
            }
        )
    return rows


def _shown(value: int | None) -> str:
    return "-" if value is None else str(value)


def _valid(count: int, retiring_at: list[int]) -> str:
    """`2: 1 current, 1 until <time>`: how many work now, and until when the rotated-out ones do."""
    if not retiring_at:
        return str(count) if count else "-"
    ends = ", ".join(f"1 until {when(end)}" for end in retiring_at)
    current = count - len(retiring_at)
    return f"{count}: {current} current, {ends}"
