"""The secret a task's `callback_url` deliveries are signed with: its tenant's own.

A receiver checks a webhook's signature to know who sent it. Were every tenant's callback deliveries
signed with the one NOTIFY_WEBHOOK_SECRET, every tenant would need that secret to check its own, and
so could sign events of its own making and send them to another tenant's receiver, which would take
them as the service's. Each tenant's secret is instead derived from NOTIFY_WEBHOOK_SECRET and the
tenant's name (HMAC-SHA256 over `callback-signing:<tenant>`, keyed with the secret's bytes): nothing
more to store or to rotate, the same in every process, and no tenant's secret tells another's. The
`default` tenant keeps NOTIFY_WEBHOOK_SECRET itself, so receivers set up before tenants keep working.
Changing NOTIFY_WEBHOOK_SECRET changes every tenant's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from webhook_service.domain.tenants import DEFAULT_TENANT

WHSEC = "whsec_"
PURPOSE = "callback-signing:"


def callback_secret(notify_webhook_secret: str, tenant: str) -> str:
    """The `whsec_` secret of `tenant`'s callback_url deliveries; "" when there is no secret to sign
    with (the deliveries then go unsigned, as without tenants)."""
    if not notify_webhook_secret or tenant == DEFAULT_TENANT:
        return notify_webhook_secret
    key = base64.b64decode(notify_webhook_secret.removeprefix(WHSEC))
    digest = hmac.new(key, f"{PURPOSE}{tenant}".encode(), hashlib.sha256).digest()
    return WHSEC + base64.b64encode(digest).decode()
