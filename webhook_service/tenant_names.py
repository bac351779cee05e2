"""What a tenant name may be (one rule for the settings that name tenants, the domain's scopes, the
event log's and usage's queries, and the metrics' `tenant` label), and the default tenant's name.

It sits at the bottom of the layers, beside keys.py, because the metrics (integrations/metrics.py) must
tell a tenant's name from anything else a damaged record might hold, and they know nothing of tasks.
"""

from __future__ import annotations

import re

# The tenant of a bare key in SERVICE_API_KEYS, of the JWT pair, and of every task recorded before
# tenants existed.
DEFAULT_TENANT = "default"
NAME_RULE = "1 to 32 characters: lowercase letters, digits, '-' and '_', starting with a letter or digit"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}\Z")


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))
