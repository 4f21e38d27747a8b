"""The service's exception root. Every error maps to one HTTP status and one machine-readable code.

HostError (rh_host.errors)
 └── ServiceError             500 internal
      ├── BadRequest          400 bad_request        (a malformed body, query or parameter)
      │    ├── InvalidBatch   400 invalid_batch      (names the JSONL line)
      │    └── UploadRejected 400 upload_rejected    (an unsafe archive or an invalid plugin)
      ├── Unauthorized        401 unauthorized       (no key, or an unknown one)
      ├── Forbidden           403 forbidden          (a tenant key on an operator route)
      ├── NotFound            404 not_found          (also another tenant's ids)
      ├── Conflict            409 conflict           (a batch id reused with other content)
      │    └── Pending        409 pending            (the outcome is not ready yet)
      ├── PayloadTooLarge     413 payload_too_large
      ├── QuotaExceeded       429 quota_exceeded     (a tenant total: the message names the quota)
      │    └── QuotaTooLarge  413 quota_exceeded     (one item larger than the whole quota)
      └── Unavailable         503 unavailable        (the database cannot be reached)
"""

from __future__ import annotations

from rh_host.errors import HostError

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "InvalidBatch",
    "NotFound",
    "PayloadTooLarge",
    "Pending",
    "QuotaExceeded",
    "QuotaTooLarge",
    "ServiceError",
    "Unauthorized",
    "Unavailable",
    "UploadRejected",
]


class ServiceError(HostError):
    """The service could not do what was asked."""

    status_code = 500
    code = "internal"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.code).strip())


class BadRequest(ServiceError):
    """The request is malformed."""

    status_code = 400
    code = "bad_request"


class InvalidBatch(BadRequest):
    """The batch body is not valid batch output."""

    code = "invalid_batch"


class UploadRejected(BadRequest):
    """The plugin archive was refused."""

    code = "upload_rejected"


class Unauthorized(ServiceError):
    """A valid bearer key is required."""

    status_code = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    """This route needs the operator token."""

    status_code = 403
    code = "forbidden"


class NotFound(ServiceError):
    """No such resource."""

    status_code = 404
    code = "not_found"


class Conflict(ServiceError):
    """The request conflicts with what is stored."""

    status_code = 409
    code = "conflict"


class Pending(Conflict):
    """The batch has no outcome yet."""

    code = "pending"


class PayloadTooLarge(ServiceError):
    """The request body is too large."""

    status_code = 413
    code = "payload_too_large"


class QuotaExceeded(ServiceError):
    """A tenant quota would be exceeded."""

    status_code = 429
    code = "quota_exceeded"


class QuotaTooLarge(QuotaExceeded):
    """This one item is larger than the tenant's whole quota."""

    status_code = 413


class Unavailable(ServiceError):
    """The service cannot serve requests right now."""

    status_code = 503
    code = "unavailable"
