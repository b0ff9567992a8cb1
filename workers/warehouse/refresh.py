"""``vitalstream warehouse refresh``: bring the materialized marts of CONTRACT §10 up to date.

- PostgreSQL: ``REFRESH MATERIALIZED VIEW CONCURRENTLY`` (each mart has a unique index on its grain), so readers
  and loading workers never wait for it; a mart never populated yet gets one plain refresh first (CONCURRENTLY
  needs a populated view). Two refreshes at once queue on the view's lock and both succeed.
- Redshift (``redshift-data://``): ``REFRESH MATERIALIZED VIEW name`` through the Data API, one
  ``ExecuteStatement`` per view (Redshift runs a refresh as its own transaction; incremental where the view
  allows it, full otherwise). Only the owner of a materialized view may refresh it, so the job runs as the owner.

Idempotent: refreshing twice leaves the same rows. Returns the names refreshed, in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from common.errors import TerminalError, classify
from schemas.ddl import MATERIALIZED_VIEWS

__all__ = ["postgres_refresh_sql", "redshift_refresh_sql", "refresh_marts"]


def postgres_refresh_sql(view: str, *, populated: bool) -> str:
    """The PostgreSQL statement that refreshes ``view`` (CONCURRENTLY once it has been populated)."""
    return f"REFRESH MATERIALIZED VIEW {'CONCURRENTLY ' if populated else ''}{view}"


def redshift_refresh_sql(view: str) -> str:
    """The Redshift statement that refreshes ``view``."""
    return f"REFRESH MATERIALIZED VIEW {view}"


async def refresh_marts(
    url: str, *, views: Sequence[str] = MATERIALIZED_VIEWS, redshift: Any = None, region: str | None = None
) -> list[str]:
    """Refresh ``views`` in the warehouse at ``url``; ``redshift`` is an optional aiobotocore client to use."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("postgresql", "postgres"):
        return await _refresh_postgres(url, views)
    if scheme == "redshift-data":
        return await _refresh_redshift(url, views, redshift, region)
    raise TerminalError(f"unsupported warehouse URL scheme {scheme!r} (expected postgresql:// or redshift-data://)")


async def _refresh_postgres(url: str, views: Sequence[str]) -> list[str]:
    import asyncpg

    try:
        conn = await asyncpg.connect(url)
    except Exception as exc:
        raise classify(exc)(f"cannot connect to the warehouse: {type(exc).__name__}") from exc
    try:
        done = []
        for view in views:
            populated = await conn.fetchval(
                "SELECT ispopulated FROM pg_matviews WHERE schemaname = 'public' AND matviewname = $1", view
            )
            if populated is None:
                raise TerminalError(f"materialized view {view} does not exist: apply the warehouse DDL first")
            await conn.execute(postgres_refresh_sql(view, populated=bool(populated)))
            done.append(view)
        return done
    except TerminalError:
        raise
    except Exception as exc:
        raise classify(exc)(f"refresh failed: {type(exc).__name__}") from exc
    finally:
        await conn.close()


async def _refresh_redshift(url: str, views: Sequence[str], client: Any, region: str | None) -> list[str]:
    from contextlib import AsyncExitStack

    from common.aws import ClientFactory
    from workers.warehouse.redshift.client import RedshiftStatements, parse_warehouse_url

    try:
        target = parse_warehouse_url(url)
    except ValueError as exc:
        raise TerminalError(str(exc)) from exc
    async with AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(ClientFactory(region or "us-east-1").client("redshift-data"))
        statements = RedshiftStatements(client, target)
        done = []
        for view in views:
            await statements.run([redshift_refresh_sql(view)])
            done.append(view)
        return done
