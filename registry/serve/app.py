"""The HTTP application: predict, models, lineage, health, metrics and OpenAPI docs.

Every error is JSON ``{"error", "message", "hint"}`` with a 4xx status when the request was
at fault (unknown task, empty text, oversized batch, wrong pair shape, bad JSON, no token).
Every prediction names the version that produced it, in the body and in ``X-Model-*`` headers.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..errors import (
    AlreadyExists,
    DatabaseError,
    IntegrityError,
    InvalidInput,
    NotFound,
    RegistryError,
)
from .batcher import MicroBatcher
from .config import ServeConfig
from .metrics import ServeMetrics
from .pool import ModelPool, Served, SwapEvent, Watcher
from .requests import (
    EXAMPLE_HINT,
    ApiError,
    PredictRequest,
    PredictResponse,
    _check_pair,
    _examples,
    _served_for,
)

_STATUS: list[tuple[type[RegistryError], int, str]] = [
    (NotFound, 404, "not_found"),
    (InvalidInput, 422, "invalid_input"),
    (AlreadyExists, 409, "conflict"),
    (IntegrityError, 409, "integrity_error"),
    (DatabaseError, 503, "database_unavailable"),
]

log = logging.getLogger("registry.serve")


def _error(status: int, code: str, message: str, hint: str | None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, "hint": hint}, status_code=status)


# ---------------------------------------------------------------------- auth + metrics (ASGI)
class _Gate:
    """Bearer-token check (everything but /health) and request metrics, as plain ASGI."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, token: str | None) -> None:
        self.app = app
        self.metrics = metrics
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = self.metrics.endpoint(path)
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            if self.token is not None and path != "/health" and not self._authorised(scope):
                response = _error(
                    401,
                    "unauthorized",
                    "This server needs a bearer token.",
                    "Send the header 'Authorization: Bearer TOKEN' (the --token the server "
                    "was started with).",
                )
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send_wrapper)
                return
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.labels(endpoint, str(status["code"])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)

    def _authorised(self, scope: Scope) -> bool:
        assert self.token is not None
        given = None
        for key, value in scope.get("headers", []):
            if key == b"authorization":
                scheme, _, credential = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    given = credential.strip()
            elif key == b"cookie":
                for part in value.decode("latin-1").split(";"):
                    name, _, credential = part.strip().partition("=")
                    if name == "adapter_registry_token" and given is None:
                        given = credential
        if given is None and scope["path"] == "/ui":  # /ui?token=... logs a browser in
            for part in scope.get("query_string", b"").decode("latin-1").split("&"):
                name, _, credential = part.partition("=")
                if name == "token":
                    given = unquote(credential)
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())


# ---------------------------------------------------------------------- the application
def create_app(
    registry: Any,
    config: ServeConfig,
    *,
    on_ready: Callable[[ModelPool], None] | None = None,
) -> FastAPI:
    """Build the application over an open :class:`~registry.store.Registry`."""
    config.check()
    metrics = ServeMetrics()

    def swapped(event: SwapEvent) -> None:
        metrics.swaps.labels(event.task, "ok" if event.ok else "failed").inc()

    pool = ModelPool(registry, config, on_swap=swapped)
    batcher = MicroBatcher(
        pool,
        max_batch=config.max_batch,
        max_wait_ms=config.max_wait_ms,
        on_batch=metrics.batch_size.observe,
        threads=config.threads,
    )
    watcher = Watcher(pool)
    started_at = time.time()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not pool.started:
            await run_in_threadpool(pool.start)
        watcher.start()
        await batcher.start()
        if on_ready is not None:
            on_ready(pool)
        try:
            yield
        finally:
            watcher.stop()
            await batcher.stop()

    app = FastAPI(
        title="adapter-registry serve",
        version=__version__,
        description=(
            "Predictions from each task's `production` adapter or fusion (or any REF), "
            "hot-swapped when the alias moves. Every answer names the version that produced it."
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.pool = pool
    app.state.metrics = metrics
    app.state.config = config
    app.state.registry = registry

    _add_error_handlers(app)
    _add_model_routes(app, registry, config, pool, batcher, metrics)
    _add_health_routes(app, pool, metrics, started_at)
    _add_docs(app)
    if config.ui:
        from .ui import add_ui

        add_ui(app, registry, pool, config)
    return _wrap(app, metrics, config.token)


def _add_error_handlers(app: FastAPI) -> None:
    """Answer every failure as JSON ``{error: {code, message, hint}}`` with its status."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return _error(err.status, err.code, err.message, err.hint)

    @app.exception_handler(RegistryError)
    async def registry_error(request: Request, err: RegistryError) -> JSONResponse:
        for cls, status, code in _STATUS:
            if isinstance(err, cls):
                return _error(status, code, err.message, err.hint)
        return _error(400, "registry_error", err.message, err.hint)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = []
        for e in err.errors():
            if e.get("type") == "json_invalid":
                problems.append(f"the body is not valid JSON ({e.get('ctx', {}).get('error')})")
                continue
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            problems.append(f"{where or 'body'}: {e.get('msg')}")
        # One message per field: pydantic lists each union member it tried.
        message = "; ".join(dict.fromkeys(problems)) or "The request is not valid."
        return _error(422, "invalid_request", message, EXAMPLE_HINT)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        # Not the request's fault; still JSON, and the log has the traceback.
        log.exception("unexpected error on %s", request.url.path, exc_info=err)
        return _error(
            500,
            "internal_error",
            f"The server failed: {type(err).__name__}: {err}",
            "Retry; if it persists, see the server's log (and run adapter-registry verify).",
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        hint = "See /docs for the endpoints." if err.status_code in (404, 405) else None
        return _error(err.status_code, "http_error", str(err.detail), hint)


def _add_model_routes(
    app: FastAPI,
    registry: Any,
    config: ServeConfig,
    pool: ModelPool,
    batcher: MicroBatcher,
    metrics: ServeMetrics,
) -> None:
    """Add ``/v1/predict``, ``/v1/models`` and ``/v1/lineage/{ref}``."""

    # ------------------------------------------------------------------ predict
    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        responses={
            401: {"description": "Missing or wrong bearer token"},
            404: {"description": "Unknown task or REF"},
            413: {"description": "Too many texts, or a text too long"},
            422: {"description": "Empty text, wrong pair shape, bad JSON"},
        },
    )
    async def predict(body: PredictRequest, response: Response) -> dict[str, Any]:
        """Classify one text or a batch with a task's served model, or with any REF."""
        examples = _examples(body, config)
        served = await _served_for(body, pool)
        _check_pair(served, examples)
        predictions = await batcher.submit(served, examples)
        info = served.describe()
        metrics.texts.labels(info["task"], info["ref"]).inc(len(examples))
        response.headers["X-Model-Ref"] = info["ref"]
        response.headers["X-Model-Sha256"] = info["sha256"]
        return {"model": info, "predictions": predictions}

    # ------------------------------------------------------------------ models
    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        """What is served: each task's alias target with its sha256, plus failed swaps."""
        serving = pool.serving()
        out = [_model_entry(s, registry, config, task) for task, s in sorted(serving.items())]
        loaded = pool.loaded()
        return {
            "alias": config.alias,
            "poll_interval_s": config.poll_interval,
            "models": out,
            "loaded": [
                _model_entry(s, registry, config, None)
                for s in loaded
                if all(s.uid != m.uid for m in serving.values())
            ],
            "failed_swaps": pool.failures(),
            "swaps": [e.to_dict() for e in list(pool.events)[-20:]],
            "memory": pool.memory(),
            "unloaded": pool.unloads,
        }

    @app.get("/v1/lineage/{ref}")
    async def lineage(ref: str) -> dict[str, Any]:
        """The lineage graph (ancestors and descendants) of any REF, as JSON."""

        def read() -> dict[str, Any]:
            entity = registry.resolve(ref)
            return {"ref": entity.ref, "id": entity.uid, "graph": registry.lineage(entity)}

        result: dict[str, Any] = await run_in_threadpool(read)
        return result


def _add_health_routes(
    app: FastAPI, pool: ModelPool, metrics: ServeMetrics, started_at: float
) -> None:
    """Add ``/health`` and ``/metrics``."""

    # ------------------------------------------------------------------ health, metrics, docs
    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and what is degraded (failed swaps, unreadable aliases)."""
        failures = pool.failures()
        degraded = bool(failures) or pool.poll_error is not None
        return {
            "status": "degraded" if degraded else "ok",
            "served": sorted(pool.serving()),
            "failed_swaps": len(failures),
            "poll_error": pool.poll_error,
            "last_poll": pool.last_poll
            and time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(pool.last_poll)),
            "uptime_s": round(time.time() - started_at, 1),
            "version": __version__,
        }

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        metrics.served.set(len(pool.serving()))
        metrics.loaded.set(len(pool.loaded()))
        metrics.unloads.set(pool.unloads)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _wrap(app: FastAPI, metrics: ServeMetrics, token: str | None) -> FastAPI:
    app.add_middleware(_Gate, metrics=metrics, token=token)
    return app


def _add_docs(app: FastAPI) -> None:
    """Swagger UI from the vendored swagger-ui-bundle package (no CDN)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    try:
        import swagger_ui_bundle
    except ImportError:  # pragma: no cover - a dependency; /openapi.json still works
        return
    app.mount("/docs/static", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path))

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="adapter-registry serve: API",
            swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon-32x32.png",
        )


def _model_entry(
    served: Served, registry: Any, config: ServeConfig, task: str | None
) -> dict[str, Any]:
    entity = served.entity
    data = served.describe()
    data.update(
        {
            "alias": f"{task}:{config.alias}" if task else None,
            "labels": served.loaded.label_names,
            "members": list(getattr(entity, "members", [])),
            "base_model_id": entity.base_model_id,
            "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(served.loaded_at)),
            "load_seconds": round(served.load_seconds, 3),
            "lineage": f"/v1/lineage/{entity.uid}",
        }
    )
    if config.ui:
        data["ui"] = f"/ui/models/{entity.uid}"
    return data
