"""The FastAPI application: versioned routes, JSON errors, health, readiness and metrics."""

from __future__ import annotations

__all__ = ["create_app", "API_VERSION"]

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from memlake import __version__
from memlake.errors import MemlakeError
from serving.api import routes_cubes, routes_memories, routes_openai, routes_retrieval
from serving.api.errors import install_error_handlers
from serving.api.limits import BodyLimit
from serving.api.metrics import ServingMetrics
from serving.api.schemas import HealthOut
from serving.components import Components

API_VERSION = "v1"

_DESCRIPTION = """\
memlake's serving tier: cubes and memories (every write is an event on the log,
answered with its partition and offset), hybrid search, chat with scheduled
memories, and an OpenAI-compatible `/v1/chat/completions`.

Every answer comes from a pinned snapshot of the lake (`snapshot_version`). To
read your own write, pass `consistency=wait` and the write's `partition:offset`.
Authenticate with `Authorization: Bearer <key>` (keys: `memlake keys create`).
"""


def create_app(components: Components, *, start: bool = True, start_in_background: bool = False) -> FastAPI:
    """The app over `components`. With `start`, the lifespan starts and stops them
    (in the background if asked, so that `/v1/health` answers while the snapshot loads)."""
    metrics = ServingMetrics()
    startup_error: list[str] = []

    def start_components() -> None:
        try:
            components.start()
        except MemlakeError as e:
            startup_error.append(str(e))
            raise

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if start:
            if start_in_background:
                threading.Thread(target=start_components, name="memlake-start", daemon=True).start()
            else:
                start_components()
        yield
        if start:
            components.stop()

    app = FastAPI(
        title="memlake",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        openapi_url=f"/{API_VERSION}/openapi.json",
        docs_url=f"/{API_VERSION}/docs",
        redoc_url=None,
    )
    app.state.components = components
    app.state.metrics = metrics
    install_error_handlers(app)
    app.middleware("http")(metrics.middleware())
    app.add_middleware(BodyLimit, max_bytes=components.settings.serving.max_body_bytes)
    for module in (routes_cubes, routes_memories, routes_retrieval, routes_openai):
        app.include_router(module.router)

    @app.get(f"/{API_VERSION}/health", response_model=HealthOut, tags=["operations"], summary="Liveness")
    def health() -> HealthOut:
        return HealthOut(status="ok")

    @app.get(
        f"/{API_VERSION}/ready",
        response_model=HealthOut,
        tags=["operations"],
        summary="Readiness: a snapshot is loaded and the index is in step with it",
        responses={503: {"model": HealthOut}},
    )
    def ready() -> HealthOut | JSONResponse:
        keeper = components.keeper
        if not keeper.ready:
            problem = startup_error[0] if startup_error else None
            body = HealthOut(status="unavailable" if problem else "loading", problem=problem)
            return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})
        snapshot = keeper.current()
        return HealthOut(status="ok", snapshot_version=snapshot.version, memories=snapshot.memory_count())

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
    def prometheus() -> Response:
        metrics.refresh(components)
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
