"""Chooses the batch loader for ``VITALSTREAM_WAREHOUSE_URL``.

``postgresql://`` / ``postgres://``: :class:`~workers.batchload.postgres.PostgresBatchLoader`.
``redshift-data://WORKGROUP_OR_CLUSTER/DATABASE?…`` (parsed like the vitals loader's URL, see
:func:`workers.warehouse.redshift_client.parse_warehouse_url`):
:class:`~workers.batchload.redshift.RedshiftBatchLoader`, staging through ``settings.bucket`` (SSE-KMS under
``settings.kms_key_id`` when set) with the COPY role from the URL or ``settings.redshift_iam_role``.
Anything else, or a Redshift URL without a COPY role, is a :class:`TerminalError` at startup.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from common.errors import TerminalError
from common.settings import WorkerSettings
from workers.batchload.postgres import PostgresBatchLoader
from workers.batchload.types import BatchLoader

__all__ = ["open_loader"]


async def open_loader(
    url: str, *, settings: WorkerSettings | None = None, s3: Any = None, redshift: Any = None
) -> BatchLoader:
    """A connected loader for ``url``; the caller closes it.

    ``settings``, ``s3`` and ``redshift`` are used by ``redshift-data://`` only: the worker's settings (read
    from the environment here if not given) and aiobotocore clients to share (opened, and closed by the
    loader's ``close``, if not given).
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("postgresql", "postgres"):
        return await PostgresBatchLoader.connect(url)
    if scheme == "redshift-data":
        from workers.batchload.redshift import RedshiftBatchLoader

        return await RedshiftBatchLoader.open(url, settings or WorkerSettings(), s3=s3, redshift=redshift)
    raise TerminalError(f"unsupported warehouse URL scheme {scheme!r} (expected postgresql:// or redshift-data://)")
