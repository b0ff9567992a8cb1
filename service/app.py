"""The gateway's ASGI application: :func:`create_app` and its lifespan.

Contract:
- ``create_app(settings)`` builds a FastAPI app and creates nothing at import time. The lifespan opens
  one aiobotocore Kinesis client (unless ``kinesis`` or ``sink`` is injected) and one DynamoDB client for
  the device registry (unless ``registry`` is injected), starts the producer, and on shutdown drains
  pending puts (bounded by the retry budget) before closing the clients.
- ``POST /v1/vitals`` is served by the raw ASGI :class:`~service.routes.VitalsEndpoint`; a documentation-only
  route with the pydantic models (``schemas.wire``) describes it in ``/openapi.json`` with every status.
- ``GET /healthz`` (alive), ``GET /readyz`` (stream ACTIVE or UPDATING, 503 otherwise), ``GET /metrics``.
- Every response, of every route (404 and 405 included), carries ``X-Content-Type-Options: nosniff`` and
  ``Cache-Control: no-store`` (CONTRACT §2); the server adds no ``Server`` banner (``service.main``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from prometheus_client import CollectorRegistry
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from common.aws import ClientFactory
from common.metrics import new_registry, render
from common.settings import GatewaySettings
from schemas.wire import ErrorDetail, IngestResponse, Reading, ReadingBatch
from service.auth import Authenticator, DeviceRegistry, DynamoDBRegistry
from service.metrics import GatewayMetrics
from service.producer import KinesisSink, Producer, Sink
from service.ratelimit import RateLimiter
from service.routes import SECURITY_HEADERS, VitalsEndpoint

logger = logging.getLogger("service.app")

VITALS_PATH = "/v1/vitals"
READY_TIMEOUT_SECONDS = 2.0
KINESIS_POOL = 64


class GatewayAPI(FastAPI):
    """FastAPI with ``POST /v1/vitals`` dispatched straight to the raw endpoint (no middleware, no router)."""

    def __init__(self, vitals: VitalsEndpoint, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._vitals = vitals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == VITALS_PATH:
            await self._vitals(scope, receive, send)  # sends the security headers itself
            return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [header for header in SECURITY_HEADERS if header[0] not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await super().__call__(scope, receive, send_secured)


def create_app(
    settings: GatewaySettings,
    *,
    kinesis: Any = None,
    registry: DeviceRegistry | None = None,
    sink: Sink | None = None,
    metrics_registry: CollectorRegistry | None = None,
) -> FastAPI:
    """The gateway app; injected ``kinesis``/``registry``/``sink`` are used as given and not closed."""
    prometheus = metrics_registry or new_registry()
    metrics = GatewayMetrics(prometheus)
    rate, burst = settings.rate_and_burst()
    failure_rate, failure_burst = settings.auth_failure_rate_and_burst()
    endpoint = VitalsEndpoint(
        metrics,
        RateLimiter(rate, burst),
        auth_failures=RateLimiter(failure_rate, failure_burst),
        max_reading_age_us=settings.max_reading_age_us(),
        fastpath=settings.gateway_fastpath == "on",
        body_timeout=settings.body_timeout_seconds,
    )
    state: dict[str, Any] = {"kinesis": kinesis}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            factory = ClientFactory(settings.aws_region, faults=settings.test_faults)
            target = sink
            if target is None:
                client = state["kinesis"]
                if client is None:
                    client = await stack.enter_async_context(
                        factory.client("kinesis", max_attempts=1, max_pool_connections=KINESIS_POOL)
                    )
                    state["kinesis"] = client
                target = KinesisSink(client, settings.stream)
            devices = registry
            if devices is None:
                dynamodb = await stack.enter_async_context(factory.client("dynamodb"))
                devices = DynamoDBRegistry(dynamodb, settings.device_table)
            producer = Producer(
                target,
                metrics,
                linger=settings.put_linger_ms / 1000,
                max_inflight=settings.put_max_inflight,
                retry_budget=settings.put_retry_budget_seconds,
            )
            producer.start()
            endpoint.bind(Authenticator(devices, ttl=settings.token_cache_seconds), producer)
            logger.info("gateway started", extra={"stream": settings.stream})
            try:
                yield
            finally:
                await producer.close(grace=settings.put_retry_budget_seconds + 2)
                await endpoint.close()
                endpoint.flush_log()
                logger.info("gateway stopped", extra={"stream": settings.stream})

    app = GatewayAPI(
        endpoint,
        title="vitalstream gateway",
        version="1.0.0",
        description="Ingestion of medical device vitals (CONTRACT §2).",
        lifespan=lifespan,
    )
    app.router.routes.insert(
        0, Route(VITALS_PATH, endpoint, methods=["POST"], name="ingest_vitals")
    )  # other methods: 405

    @app.get("/healthz", response_model=dict[str, str], tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=dict[str, str],
        responses={503: {"model": ErrorDetail, "description": "The stream is not reachable or not ACTIVE."}},
        tags=["operations"],
    )
    async def readyz() -> Response:
        """The stream is reachable and ACTIVE (or UPDATING)."""
        client = state["kinesis"]
        if sink is not None and client is None:
            return JSONResponse({"status": "ready"})
        try:
            summary = await asyncio.wait_for(
                client.describe_stream_summary(StreamName=settings.stream), READY_TIMEOUT_SECONDS
            )
            status = summary["StreamDescriptionSummary"]["StreamStatus"]
        except Exception as exc:  # any failure means not ready
            logger.warning("stream not reachable", extra={"error_type": type(exc).__name__})
            return JSONResponse({"detail": "the stream is not reachable"}, status_code=503)
        if status not in ("ACTIVE", "UPDATING"):
            return JSONResponse({"detail": f"the stream is {status}"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
        tags=["operations"],
    )
    async def prometheus_metrics() -> Response:
        """Prometheus exposition of the gateway's metrics."""
        body, content_type = render(prometheus)
        return Response(body, media_type=content_type)

    docs_route = _documentation_route()

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=[*app.routes, docs_route]
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.prometheus = prometheus
    return app


def _documentation_route() -> APIRoute:
    """An APIRoute that only documents ``POST /v1/vitals`` (the request is served by ``VitalsEndpoint``)."""

    request_id = {"description": "The request's id, as in the logs.", "schema": {"type": "string"}}

    def error(description: str, retry_after: bool = False) -> dict[str, Any]:
        response: dict[str, Any] = {"model": ErrorDetail, "description": description}
        response["headers"] = {"X-Request-ID": request_id}
        if retry_after:
            response["headers"]["Retry-After"] = {
                "description": "Seconds to wait.",
                "required": True,
                "schema": {"type": "integer"},
            }
        return response

    async def ingest_vitals(body: Annotated[ReadingBatch | Reading, Body()]) -> IngestResponse:
        """Ingest one reading or a batch of 1 to 1,000; accepted readings are in Kinesis before the answer."""
        raise NotImplementedError("served by service.routes.VitalsEndpoint")

    return APIRoute(
        VITALS_PATH,
        ingest_vitals,
        methods=["POST"],
        status_code=202,
        response_model=IngestResponse,
        summary="Ingest vitals",
        dependencies=[Depends(HTTPBearer(description="Device token from `vitalstream devices add`."))],
        responses={
            202: {
                "description": "At least one reading accepted (rejected ones listed).",
                "headers": {"X-Request-ID": request_id},
            },
            400: error("Body is not JSON or not an object."),
            401: error("Missing or unknown token."),
            403: error("A reading names a device the token does not cover; nothing accepted."),
            408: error("The request body did not arrive within the body timeout; the connection is closed."),
            413: error("Body over 1 MiB or more than 1,000 readings."),
            415: error("Content type is not JSON."),
            422: {
                "model": IngestResponse,
                "description": "No reading accepted (`accepted` is 0).",
                "headers": {"X-Request-ID": request_id},
            },
            429: error("The device exceeded its rate limit.", retry_after=True),
            503: error("The stream cannot take the data now; nothing accepted.", retry_after=True),
        },
    )
