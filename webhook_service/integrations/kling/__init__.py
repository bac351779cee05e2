"""Talking to Kling (or a Kling-compatible gateway): the client and its exceptions."""

from webhook_service.integrations.kling.client import ClientPerProcess, JwtSigner, KlingClient, Timeouts
from webhook_service.integrations.kling.errors import (
    KlingAccountError,
    KlingAPIError,
    KlingAuthError,
    KlingError,
    KlingRateLimited,
    KlingRequestError,
    KlingServerError,
    KlingTransportError,
)

__all__ = [
    "ClientPerProcess",
    "JwtSigner",
    "KlingAPIError",
    "KlingAccountError",
    "KlingAuthError",
    "KlingClient",
    "KlingError",
    "KlingRateLimited",
    "KlingRequestError",
    "KlingServerError",
    "KlingTransportError",
    "Timeouts",
]
