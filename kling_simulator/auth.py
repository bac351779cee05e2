"""Bearer authentication as Kling does it: a static API key, or an HS256 JWT signed with the secret key;
the unified API's paths take the unified API key when one is configured (`api_key`)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

import jwt


@dataclass(frozen=True)
class Auth:
    """With neither a token nor keys configured, any non-empty bearer is accepted."""

    token: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    api_key: str | None = None  # the unified API's; None: it takes what the /v1 API takes

    def __post_init__(self) -> None:
        if (self.access_key is None) != (self.secret_key is None):
            raise ValueError("access_key and secret_key go together")

    def check_unified(self, header: str | None) -> tuple[int, str] | None:
        """As `check`, for the unified API's paths: its own key when one is configured."""
        if self.api_key is None:
            return self.check(header)
        scheme, _, bearer = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not bearer.strip():
            return 1001, "Authorization is empty"
        if hmac.compare_digest(bearer.strip().encode(), self.api_key.encode()):
            return None
        return 1002, "Authorization is invalid"

    def check(self, header: str | None) -> tuple[int, str] | None:
        """None when authorised, else Kling's (code, message)."""
        scheme, _, bearer = (header or "").partition(" ")
        bearer = bearer.strip()
        if scheme.lower() != "bearer" or not bearer:
            return 1001, "Authorization is empty"
        if self.token is None and self.access_key is None:
            return None
        if self.token is not None and hmac.compare_digest(bearer.encode(), self.token.encode()):
            return None
        if self.access_key is None or self.secret_key is None:
            return 1002, "Authorization is invalid"
        try:
            jwt.decode(
                bearer,
                self.secret_key,
                algorithms=["HS256"],
                issuer=self.access_key,
                options={"require": ["iss", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            return 1004, "Authorization is expired"
        except jwt.ImmatureSignatureError:
            return 1003, "Authorization is not yet valid"
        except jwt.InvalidTokenError:
            return 1002, "Authorization is invalid"
        return None
