"""The one exception hierarchy for everything that can go wrong talking to Kling.

    KlingError                      any failure; .retryable, .maybe_created
    ├── KlingTransportError         no usable answer: connect error, timeout, non-JSON body
    └── KlingAPIError               Kling answered with an envelope whose code != 0
        ├── KlingAuthError          1000-1004 (1003/1004 retryable after re-signing)
        ├── KlingAccountError       1100-1103, 1304: the account cannot do this; a person must act
        ├── KlingRequestError       1200-1203, 1300, 1301: this request will never succeed
        ├── KlingRateLimited        1302, 1303: back off and try again
        └── KlingServerError        5000-5002: try again, but the task may exist already

`maybe_created` is the flag that matters before a retry of a create: when it is set, look the task
up by external_task_id first, or the retry may create a second upstream task.
"""

from __future__ import annotations

from typing import Any


class KlingError(Exception):
    retryable: bool = False
    maybe_created: bool = False

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code
        self.request_id = request_id

    def as_dict(self) -> dict[str, Any]:
        return {
            "http_status": self.http_status,
            "code": self.code,
            "message": self.message,
            "request_id": self.request_id,
            "retryable": self.retryable,
        }

    def __str__(self) -> str:
        where = f"HTTP {self.http_status}" if self.http_status else "no HTTP answer"
        return f"{self.message} (code {self.code}, {where}, request_id {self.request_id})"


class KlingTransportError(KlingError):
    retryable = True
    maybe_created = True  # the request may have reached Kling before the connection failed


class KlingAPIError(KlingError):
    pass


class KlingAuthError(KlingAPIError):
    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.code in (1003, 1004)


class KlingAccountError(KlingAPIError):
    pass


class KlingRequestError(KlingAPIError):
    pass


class KlingRateLimited(KlingAPIError):
    retryable = True


class KlingServerError(KlingAPIError):
    retryable = True

    @property
    def maybe_created(self) -> bool:  # type: ignore[override]
        return self.code != 5001  # 5001 is maintenance: the request was turned away


def error_for(http_status: int, code: int | None, message: str, request_id: str | None) -> KlingAPIError:
    """Pick the class from Kling's code (the table in kling-api.md), falling back on the HTTP status."""
    cls: type[KlingAPIError]
    if code is not None and 1000 <= code <= 1004:
        cls = KlingAuthError
    elif code in (1100, 1101, 1102, 1103, 1304):
        cls = KlingAccountError
    elif code in (1302, 1303):
        cls = KlingRateLimited
    elif code is not None and (1200 <= code <= 1203 or code in (1300, 1301)):
        cls = KlingRequestError
    elif (code is not None and 5000 <= code <= 5999) or http_status >= 500:
        cls = KlingServerError
    elif http_status in (401, 403):
        cls = KlingAuthError
    elif http_status == 429:
        cls = KlingRateLimited
    else:
        cls = KlingRequestError
    return cls(message, http_status=http_status, code=code, request_id=request_id)
