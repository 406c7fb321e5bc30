"""Request dependencies: the service's components, the caller, consistency parameters."""

from __future__ import annotations

__all__ = [
    "Caller",
    "CallerDep",
    "ComponentsDep",
    "ConsistencyDep",
    "ReadConsistency",
    "get_caller",
    "get_components",
    "read_consistency",
    "request_id",
    "RequestIdDep",
]

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Header, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from memlake.ids import uuid7
from memlake.model import Actor
from serving.auth import ApiKey
from serving.components import Components

_bearer = HTTPBearer(auto_error=False, description="An API key made with `memlake keys create`.")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The same key, as a header.")


def get_components(request: Request) -> Components:
    components: Components = request.app.state.components
    return components


@dataclass(frozen=True, slots=True)
class Caller:
    key: ApiKey

    @property
    def principal(self) -> str:
        return self.key.principal

    @property
    def actor(self) -> Actor:
        return self.key.actor


def get_caller(
    components: Annotated[Components, Depends(get_components)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_header)],
) -> Caller:
    token = bearer.credentials if bearer is not None else api_key
    return Caller(components.keys.authenticate(token))


@dataclass(frozen=True, slots=True)
class ReadConsistency:
    consistency: Literal["snapshot", "wait"]
    wait_for: tuple[tuple[int, int], ...]
    timeout_s: float | None


def read_consistency(
    consistency: Annotated[
        Literal["snapshot", "wait"],
        Query(description="'wait' blocks (bounded) until the snapshot covers every `wait_for` position."),
    ] = "snapshot",
    wait_for: Annotated[
        list[Annotated[str, Query(pattern=r"^\d{1,6}:\d{1,18}$")]],
        Query(max_length=64, description="partition:offset of a write, as a write answered it."),
    ] = [],  # noqa: B006 - FastAPI copies query defaults
    timeout_s: Annotated[float | None, Query(gt=0, le=300)] = None,
) -> ReadConsistency:
    positions = tuple((int(p), int(o)) for p, o in (item.split(":") for item in wait_for))
    return ReadConsistency(consistency, positions, timeout_s)


def request_id(x_request_id: Annotated[str | None, Header(max_length=128)] = None) -> str:
    return x_request_id or str(uuid7())


ComponentsDep = Annotated[Components, Depends(get_components)]
CallerDep = Annotated[Caller, Depends(get_caller)]
ConsistencyDep = Annotated[ReadConsistency, Depends(read_consistency)]
RequestIdDep = Annotated[str, Depends(request_id)]
