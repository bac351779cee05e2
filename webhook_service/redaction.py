"""URLs as they may be shown or logged: webhook, download and Redis URLs often carry a secret (a
password before the host, a token in the path or query).

Two strengths, for two readers. `shown_url` keeps scheme, host and port only: for what any API client
may read (task views, deliveries), where the path itself may be the secret (Slack's webhook URLs).
`url_without_secrets` keeps the path too: for operators' error messages, where the path tells which
file or which service, and only credentials and query strings carry secrets. Log lines get their own
pattern-based redaction (integrations/logs.py), since a secret can reach one from anywhere.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_CREDENTIALS = re.compile(r"(?<=//)[^/?#@]*@")


def shown_url(target: str) -> str:
    """`https://hooks.example/…`: the origin, and whether there was more."""
    parts = urlsplit(target)
    if not parts.scheme or not parts.hostname:
        return target  # email recipients
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # out of range: refused at the door since, but a record may hold one
        port = ""
    rest = "/…" if parts.path.strip("/") or parts.query else "/"
    return f"{parts.scheme}://{host}{port}{rest}"


def url_without_secrets(url: str) -> str:
    """The URL without user, password, query and fragment."""
    return _CREDENTIALS.sub("", re.split(r"[?#]", url, maxsplit=1)[0])
