"""The one entry point from ``VITALSTREAM_WAREHOUSE_URL`` to a warehouse loader, for every pipeline.

``kind="vitals"``: a :class:`~workers.warehouse.vitals_types.WarehouseLoader` (the vitals pipeline);
``kind="files"``: a :class:`~workers.warehouse.file_types.BatchLoader` (the ``ehr`` and ``claims`` pipelines).

- ``postgresql://`` / ``postgres://``: :mod:`workers.warehouse.postgres` (asyncpg pool).
- ``redshift-data://WORKGROUP_OR_CLUSTER/DATABASE?…`` (parsed by
  :func:`workers.warehouse.redshift.client.parse_warehouse_url`): :mod:`workers.warehouse.redshift`, through
  the Data API, with the COPY role from the URL or ``settings.redshift_iam_role``; the file loader stages
  through ``settings.bucket`` (SSE-KMS under ``settings.kms_key_id`` when set).

Anything else, or a Redshift URL without a COPY role, is a :class:`TerminalError` at startup. The caller closes
the loader; clients not given are opened here and closed by the loader's ``close``.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any, Literal, overload
from urllib.parse import urlsplit

from common.errors import TerminalError
from common.settings import WorkerSettings
from workers.warehouse.file_types import BatchLoader
from workers.warehouse.vitals_types import WarehouseLoader

__all__ = ["open_loader"]


@overload
async def open_loader(
    url: str,
    *,
    kind: Literal["files"] = ...,
    settings: WorkerSettings | None = None,
    s3: Any = None,
    redshift: Any = None,
) -> BatchLoader: ...


@overload
async def open_loader(
    url: str,
    *,
    kind: Literal["vitals"],
    settings: WorkerSettings | None = None,
    s3: Any = None,
    redshift: Any = None,
) -> WarehouseLoader: ...


async def open_loader(
    url: str,
    *,
    kind: Literal["files", "vitals"] = "files",
    settings: WorkerSettings | None = None,
    s3: Any = None,
    redshift: Any = None,
) -> BatchLoader | WarehouseLoader:
    """A connected loader of ``kind`` for ``url``; the caller closes it.

    ``settings``, ``s3`` and ``redshift`` are used by ``redshift-data://`` only: the worker's settings (read
    from the environment here if not given) and aiobotocore clients to share.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("postgresql", "postgres"):
        if kind == "vitals":
            from workers.warehouse.postgres.vitals import PostgresLoader

            return await PostgresLoader.connect(url)
        from workers.warehouse.postgres.files import PostgresBatchLoader

        return await PostgresBatchLoader.connect(url)
    if scheme == "redshift-data":
        settings = settings or WorkerSettings()
        if kind == "files":
            from workers.warehouse.redshift.files import RedshiftBatchLoader

            return await RedshiftBatchLoader.open(url, settings, s3=s3, redshift=redshift)
        return await _redshift_vitals(url, settings, redshift)
    raise TerminalError(f"unsupported warehouse URL scheme {scheme!r} (expected postgresql:// or redshift-data://)")


async def _redshift_vitals(url: str, settings: WorkerSettings, redshift: Any) -> WarehouseLoader:
    from common.aws import ClientFactory
    from workers.warehouse.redshift.client import parse_warehouse_url
    from workers.warehouse.redshift.vitals import RedshiftDataLoader

    try:
        target = parse_warehouse_url(url, settings.redshift_iam_role)
    except ValueError as exc:
        raise TerminalError(str(exc)) from exc
    if not target.iam_role:
        raise TerminalError(
            "the Redshift loader needs an IAM role for COPY (iam_role= or VITALSTREAM_REDSHIFT_IAM_ROLE)"
        )
    stack = AsyncExitStack()
    try:
        if redshift is None:
            redshift = await stack.enter_async_context(ClientFactory(settings.aws_region).client("redshift-data"))
        return RedshiftDataLoader(redshift, target, stack=stack)
    except BaseException:
        await stack.aclose()
        raise
