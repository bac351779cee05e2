"""Secrets the service must read back (it signs or checks with them), kept encrypted in Redis.

A hash would not do: an HMAC needs the secret itself. So each is encrypted (Fernet) under a key derived
from SECRET_KEY, so a copy of Redis alone (a backup, a replica, someone with `redis-cli`) does not give
it away. Each use names its own `purpose` (HKDF's `info`): the derived keys are independent of each
other and of SECRET_KEY's other uses (callback URL tokens, the dashboard's cookie), so learning one says
nothing about the others. A purpose is fixed for good: another one makes what it sealed unreadable.

SECRET_KEY can change: what was sealed under an earlier key (named in SECRET_KEY_FALLBACKS) is still
read, and everything new is sealed under the current one; `reseal` seals a stored value again under the
current key (`flask secrets reseal`), after which the earlier key may go.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def cipher(secret_key: str, purpose: bytes, fallbacks: Sequence[str] = ()) -> MultiFernet:
    """Seals under `secret_key`; opens what it or any of the earlier keys sealed."""
    return MultiFernet([_fernet(key, purpose) for key in (secret_key, *fallbacks)])


def _fernet(secret_key: str, purpose: bytes) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))
