"""JSON errors: every failure answers `{"error": {"type", "message", "details"}}` with a fitting status.

HTTP status codes are chosen here and nowhere else in memlake.
"""

from __future__ import annotations

__all__ = ["install_error_handlers", "status_of", "error_response"]

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from memlake.errors import (
    AuthenticationError,
    ConfigError,
    ConsistencyTimeoutError,
    CubeExistsError,
    CubeNotFoundError,
    GenerationError,
    InfrastructureError,
    InvalidEventError,
    LimitExceededError,
    MemlakeError,
    MemoryExistsError,
    MemoryNotFoundError,
    MemoryNotWritableError,
    PermissionDeniedError,
    RejectedEventError,
    RollbackTargetError,
    SnapshotUnavailableError,
    TimeTravelError,
)

log = logging.getLogger(__name__)

# Most specific first: the first class an error is an instance of decides.
_STATUS: list[tuple[type[Exception], int, str]] = [
    (AuthenticationError, 401, "unauthenticated"),
    (CubeNotFoundError, 404, "cube_not_found"),
    (MemoryNotFoundError, 404, "memory_not_found"),
    (PermissionDeniedError, 403, "permission_denied"),
    (CubeExistsError, 409, "cube_exists"),
    (MemoryExistsError, 409, "memory_exists"),
    (MemoryNotWritableError, 409, "memory_not_writable"),
    (RollbackTargetError, 422, "rollback_target_out_of_range"),
    (RejectedEventError, 409, "conflict"),
    (InvalidEventError, 422, "invalid"),
    (LimitExceededError, 422, "limit_exceeded"),
    (TimeTravelError, 422, "version_out_of_range"),
    (ConsistencyTimeoutError, 503, "consistency_timeout"),
    (SnapshotUnavailableError, 503, "snapshot_unavailable"),
    (GenerationError, 502, "generation_failed"),
    (InfrastructureError, 503, "dependency_unavailable"),
    (ConfigError, 500, "misconfigured"),
    (MemlakeError, 500, "internal"),
]


def status_of(error: Exception) -> tuple[int, str]:
    for cls, status, name in _STATUS:
        if isinstance(error, cls):
            return status, name
    return 500, "internal"


def error_response(
    status: int,
    kind: str,
    message: str,
    *,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"type": kind, "message": message, "details": details or []}}
    return JSONResponse(body, status_code=status, headers=headers)


def _details(error: Exception) -> list[dict[str, Any]]:
    if isinstance(error, InvalidEventError):
        return [{"field": p.field, "problem": p.problem} for p in error.problems]
    if isinstance(error, LimitExceededError):
        return [{"field": error.field, "limit": error.limit, "actual": error.actual}]
    if isinstance(error, ConsistencyTimeoutError):
        return [
            {
                "partition": error.partition,
                "offset": error.offset,
                "waited_s": round(error.waited_s, 3),
                "snapshot_version": error.snapshot_version,
            }
        ]
    return []


def _memlake(_: Request, error: Exception) -> JSONResponse:
    status, kind = status_of(error)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="memlake"'
    if status == 503:
        headers["Retry-After"] = "1"
    if status >= 500:
        log.warning("request failed with %s: %s", status, error)
    return error_response(status, kind, str(error), details=_details(error), headers=headers)


def _validation(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    details = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item.get("loc", ()))
        details.append({"field": loc, "problem": str(item.get("msg", ""))})
    message = "; ".join(f"{d['field']}: {d['problem']}" for d in details[:5]) or "invalid request"
    return error_response(422, "invalid_request", message, details=details)


def _http(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    kind = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
        error.status_code, "http_error"
    )
    return error_response(error.status_code, kind, str(error.detail), headers=dict(error.headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MemlakeError, _memlake)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
