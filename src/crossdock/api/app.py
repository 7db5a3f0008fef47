"""The FastAPI application: REST /api/v1, the control panel at /, health, readiness and metrics."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext

from fastapi import Depends, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crossdock import __version__
from crossdock.api import problems
from crossdock.api.limits import BodySizeLimit
from crossdock.api.routes_documents import router as documents
from crossdock.api.routes_hooks import HookIngress, hook_ingest
from crossdock.api.routes_hooks import router as hooks
from crossdock.api.routes_labels import router as labels
from crossdock.api.routes_myparcelcom import router as myparcelcom
from crossdock.api.routes_oauth import router as oauth
from crossdock.api.routes_ops import router as ops
from crossdock.api.routes_rates import router as rates
from crossdock.api.routes_shipping import router as shipping
from crossdock.api.routes_v1 import router as v1
from crossdock.api.routes_webhooks import router as webhook_endpoints
from crossdock.config import Settings
from crossdock.engine.metrics import refresh_queue_depth
from crossdock.engine.tuning import tune_long_running_process
from crossdock.engine.worker import run_worker
from crossdock.hub import Hub
from crossdock.logs import configure_logging, get_logger
from crossdock.store.migrate import current_revision, head_revision
from crossdock.web.app import install as install_panel

log = get_logger(__name__)
HTTP_REQUESTS = Counter(
    "crossdock_http_requests_total", "HTTP requests served", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram("crossdock_http_request_seconds", "HTTP request latency", ["method", "route"])


def create_app(hub: Hub, *, dispose_on_shutdown: bool = False, run_workers: bool = False) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # With run_workers (`crossdock serve` without --no-workers) a job worker shares the server's process;
        # on shutdown it stops claiming and gives running jobs the grace period before the database closes.
        async with run_worker(hub) if run_workers else nullcontext():
            yield
        if dispose_on_shutdown:
            await hub.close()

    app = FastAPI(
        title="crossdock",
        version=__version__,
        description="Order-fulfilment integration hub. Authenticate with 'Authorization: Bearer <API token>'.",
        lifespan=lifespan,
    )
    app.state.hub = hub
    problems.install(app)
    # The REST API refuses NUL characters in its input (PostgreSQL cannot store them); inbound hooks and the
    # integration contracts take the remote's bytes as they come.
    api_input = [Depends(problems.refuse_nul_characters)]
    app.include_router(v1, dependencies=api_input)
    app.include_router(documents, dependencies=api_input)
    app.include_router(webhook_endpoints, dependencies=api_input)
    app.include_router(hooks)
    app.state.hook_ingest = hook_ingest(hub)
    app.include_router(labels, dependencies=api_input)
    app.include_router(myparcelcom)
    app.include_router(oauth)
    app.include_router(ops, dependencies=api_input)
    app.include_router(shipping, dependencies=api_input)
    app.include_router(rates, dependencies=api_input)
    install_panel(app)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        try:
            async with hub.db.session() as session:
                await session.execute(text("SELECT 1"))
            revision = await current_revision(hub.db)
        except Exception as exc:
            return JSONResponse(
                {"status": "unavailable", "database": f"unreachable: {type(exc).__name__}"},
                status_code=503,
            )
        head = head_revision()
        if revision != head:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "database": "reachable",
                    "migrations": f"at {revision}, need {head}: run 'crossdock migrate'",
                },
                status_code=503,
            )
        return JSONResponse({"status": "ready", "database": "reachable", "migrations": revision})

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics() -> Response:
        try:
            await refresh_queue_depth(hub.db)
        except Exception as exc:  # an unreachable database must not hide the other metrics
            log.warning("could not read the job queue's depth", error=f"{type(exc).__name__}")
        return Response(_exposition(), media_type=CONTENT_TYPE_LATEST)

    # Innermost: the hooks' plain-ASGI way in is counted by the metrics and limited by the body size limit.
    app.add_middleware(HookIngress, owner=app)
    app.add_middleware(RequestMetrics)
    app.add_middleware(BodySizeLimit, max_bytes=hub.settings.max_body_bytes)
    return app


# The environment variable prometheus_client reads for its multiprocess mode (prometheus.github.io/client_python,
# "Multiprocess Mode"): set by `crossdock serve --processes N`, each process then writes its metrics to files there.
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Whether each process of `crossdock serve --processes N` also runs a job worker ("1") or not ("0").
SERVE_WORKERS_ENV = "CROSSDOCK_SERVE_PROCESS_WORKERS"


def _exposition() -> bytes:
    """The metrics in Prometheus's text format: this process's, or, with several server processes, all of
    theirs (whichever of them a scrape reaches)."""
    if os.environ.get(MULTIPROCESS_DIR_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()


def server_app(settings: Settings, *, run_workers: bool) -> FastAPI:
    """The app `crossdock serve` runs, in its one process or in each of its processes."""
    app = create_app(Hub.from_settings(settings), dispose_on_shutdown=True, run_workers=run_workers)
    # The app is built: what lives as long as the server leaves the garbage collector's sight. Otherwise a full
    # collection walks the whole application now and then and holds every request meanwhile (engine/tuning.py).
    tune_long_running_process()
    return app


def server_process_app() -> FastAPI:
    """The app of one of `crossdock serve --processes N`'s processes: uvicorn calls this in each process it starts
    (settings and logging from the environment, as the parent had them; migrations already run by the parent)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return server_app(settings, run_workers=os.environ.get(SERVE_WORKERS_ENV) == "1")


class RequestMetrics:
    """Counts requests by method, route template and status, and observes their latency.

    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs every request in a
    task group of its own with memory streams between the layers, which cost more than a stored webhook's
    whole database work once that was batched (bench/webhook_ingest.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router has put the matched route into this same scope.
            path = getattr(scope.get("route"), "path", "unmatched")
            HTTP_REQUESTS.labels(scope["method"], path, str(status)).inc()
            HTTP_LATENCY.labels(scope["method"], path).observe(time.perf_counter() - started)
