"""``vitalstream worker PIPELINE``: one worker process of a pipeline.

Builds :class:`~common.settings.WorkerSettings` once, opens the aiobotocore clients in an AsyncExitStack,
composes the pipeline (``workers.pipelines.registry``), serves ``/metrics`` and ``/healthz`` on
``VITALSTREAM_METRICS_HOST:VITALSTREAM_METRICS_PORT`` (127.0.0.1 by default),
and runs the :class:`~workers.runtime.runner.Runner` until SIGTERM/SIGINT. It then drains (flush, commit,
checkpoint, release leases) and exits within ``VITALSTREAM_SHUTDOWN_GRACE_SECONDS``.

Exit codes: 0 clean stop, 1 runtime failure or grace period exceeded, 2 unknown pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from contextlib import AsyncExitStack

from common.aws import ClientFactory
from common.logging import configure_logging
from common.metrics import new_registry, serve_metrics
from common.settings import WorkerSettings
from workers.pipelines.registry import PipelineContext, UnknownPipelineError, WorkerClients, build_pipeline, resolve
from workers.runtime.flush import FlushPolicy
from workers.runtime.memory import tune_allocator
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.runner import Runner
from workers.runtime.shutdown import Shutdown
from workers.sources.kinesis import default_worker_id

log = logging.getLogger("workers.main")


def main(pipeline: str) -> int:
    """Run one worker of ``pipeline`` until signalled; returns the process exit code."""
    settings = WorkerSettings()
    configure_logging(settings.log_level)
    tune_allocator()
    try:
        resolve(pipeline)
    except UnknownPipelineError as exc:
        log.error("cannot start worker: %s", exc, extra={"pipeline": pipeline})
        print(f"vitalstream worker: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run_worker(pipeline, settings))


async def run_worker(pipeline: str, settings: WorkerSettings) -> int:
    shutdown = Shutdown(settings.shutdown_grace_seconds)
    shutdown.install()
    registry = new_registry()
    metrics = WorkerMetrics(registry, pipeline)
    worker_id = default_worker_id()
    try:
        async with AsyncExitStack() as stack:
            factory = ClientFactory(settings.aws_region, faults=settings.test_faults)
            clients = WorkerClients(
                kinesis=await stack.enter_async_context(factory.client("kinesis")),
                s3=await stack.enter_async_context(factory.client("s3")),
                sqs=await stack.enter_async_context(factory.client("sqs")),
                dynamodb=await stack.enter_async_context(factory.client("dynamodb")),
                # one attempt per call: the catalog sink retries its pending partitions itself, off the hot path
                glue=await stack.enter_async_context(factory.client("glue", max_attempts=1)),
            )
            ctx = PipelineContext(pipeline, worker_id, settings, clients, registry, metrics, stack, shutdown.stop_event)
            source, handler = await build_pipeline(ctx)
            policy = FlushPolicy(settings.flush_max_records, settings.flush_max_bytes, settings.flush_seconds)
            runner = Runner(
                source, handler, policy, metrics, pipeline=pipeline, grace_seconds=settings.shutdown_grace_seconds
            )
            server = await serve_metrics(registry, settings.metrics_host, settings.metrics_port, healthy=runner.healthy)
            stack.push_async_callback(_close_server, server)
            log.info(
                "worker started",
                extra={"pipeline": pipeline, "worker_id": worker_id, "port": settings.metrics_port},
            )
            return await _supervise(runner, shutdown, pipeline)
    except UnknownPipelineError as exc:
        log.error("cannot start worker: %s", exc, extra={"pipeline": pipeline})
        return 2
    finally:
        shutdown.uninstall()


async def _supervise(runner: Runner, shutdown: Shutdown, pipeline: str) -> int:
    """Run until the runner ends (failure) or a stop request's grace period is used up."""
    task = asyncio.create_task(runner.run(shutdown.stop_event), name=f"runner-{pipeline}")
    stop = asyncio.create_task(shutdown.stop_event.wait())
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        while not task.done() and shutdown.remaining() > 0:
            await asyncio.wait({task}, timeout=min(0.2, shutdown.remaining()))
        if not task.done():
            log.error("grace period exceeded: stopping now", extra={"pipeline": pipeline})
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=2.0)
            return 1
    stop.cancel()
    if task.cancelled():
        return 1
    if (exc := task.exception()) is not None:
        log.error("worker failed", extra={"pipeline": pipeline, "error_type": type(exc).__name__}, exc_info=exc)
        return 1
    log.info("worker stopped cleanly", extra={"pipeline": pipeline})
    return 0


async def _close_server(server: asyncio.Server) -> None:
    server.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(server.wait_closed(), timeout=1.0)
