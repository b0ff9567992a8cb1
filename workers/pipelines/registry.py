"""Pipeline name -> builder. ``workers.main`` asks here; only ``pipelines/`` composes concrete components.

A pipeline module (``workers/pipelines/<name>.py``) exposes::

    async def build(ctx: PipelineContext) -> tuple[Source, BatchHandler]

Known names (``vitals``, ``ehr``, ``claims``) resolve lazily to ``workers.pipelines.<name>:build``, so a
pipeline whose module is not there yet fails with a clear :class:`UnknownPipelineError` instead of an
ImportError deep in a stack trace. Other builders (tests, plugins) can be added with :func:`register`.
Resources a builder opens (DB pools, tasks) must be registered on ``ctx.stack`` so they close at exit.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from common.settings import WorkerSettings
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.types import BatchHandler, Source
from workers.sources.s3_events import S3EventsSource

KNOWN_PIPELINES = ("vitals", "ehr", "claims")


@dataclass(frozen=True)
class WorkerClients:
    """aiobotocore clients living for the process (opened by ``workers.main`` in an AsyncExitStack)."""

    kinesis: Any
    s3: Any
    sqs: Any
    dynamodb: Any
    glue: Any = None  # Glue Data Catalog (partition registration); None: not catalogued


@dataclass(frozen=True)
class PipelineContext:
    """Everything a builder may use; built once in ``workers.main``."""

    name: str
    worker_id: str
    settings: WorkerSettings
    clients: WorkerClients
    registry: CollectorRegistry
    metrics: WorkerMetrics
    stack: AsyncExitStack
    stopping: asyncio.Event  # set on SIGTERM/SIGINT: sources stop fetching, the runner drains


Builder = Callable[[PipelineContext], Awaitable[tuple[Source, BatchHandler]]]


class UnknownPipelineError(LookupError):
    """No builder is registered or importable for the requested pipeline name."""


_builders: dict[str, Builder] = {}


def register(name: str, builder: Builder) -> None:
    """Register (or replace) the builder of pipeline ``name``."""
    _builders[name] = builder


def resolve(name: str) -> Builder:
    """The builder of ``name``: registered ones first, then ``workers.pipelines.<name>:build``."""
    if name in _builders:
        return _builders[name]
    if name not in KNOWN_PIPELINES:
        raise UnknownPipelineError(f"unknown pipeline {name!r}; known: {', '.join(available())}")
    module_name = f"workers.pipelines.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise UnknownPipelineError(f"pipeline {name!r} is not built into this release ({module_name} missing)") from exc
    builder = getattr(module, "build", None)
    if not callable(builder):
        raise UnknownPipelineError(f"{module_name} has no `async def build(ctx)`")
    return builder  # type: ignore[no-any-return]


def available() -> list[str]:
    return sorted({*KNOWN_PIPELINES, *_builders})


async def build_pipeline(ctx: PipelineContext) -> tuple[Source, BatchHandler]:
    """Compose the source and handler of ``ctx.name``. Raises :class:`UnknownPipelineError`."""
    return await resolve(ctx.name)(ctx)


# -- source helpers for builders (composition lives in pipelines/) ------------------------------------


def s3_events_source(ctx: PipelineContext, queue: str) -> S3EventsSource:
    """The S3-event source of ``ctx``'s pipeline on SQS queue ``queue`` (name or URL)."""
    return S3EventsSource(ctx.clients.sqs, ctx.clients.s3, queue=queue, pipeline=ctx.name, metrics=ctx.metrics)
