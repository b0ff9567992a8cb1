"""Chooses the batch loader for ``VITALSTREAM_WAREHOUSE_URL``.

``postgresql://`` / ``postgres://``: :class:`~workers.batchload.postgres.PostgresBatchLoader`.
``redshift-data://``: not supported yet by the batch pipelines — a clear :class:`TerminalError` at startup
(the SQL in :mod:`workers.batchload.sql` is Redshift-compatible; a Data API loader is the missing piece).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from common.errors import TerminalError
from workers.batchload.postgres import PostgresBatchLoader
from workers.batchload.types import BatchLoader

__all__ = ["open_loader"]


async def open_loader(url: str) -> BatchLoader:
    """A connected loader for ``url``; the caller closes it."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("postgresql", "postgres"):
        return await PostgresBatchLoader.connect(url)
    if scheme == "redshift-data":
        raise TerminalError(
            "the ehr and claims pipelines do not support redshift-data:// warehouses yet; "
            "use a postgresql:// warehouse URL"
        )
    raise TerminalError(f"unsupported warehouse URL scheme {scheme!r} (expected postgresql:// or redshift-data://)")
