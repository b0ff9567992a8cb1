"""Arrow tables into PostgreSQL by binary ``COPY … FROM STDIN`` (pgpq encoding), streamed in bounded pieces.

Contract: :func:`copy_arrow` sends ``rows`` to ``table`` (columns by name) as a stream of encoded record batches
of at most :data:`COPY_BATCH_ROWS` rows, so the encoded data never exists whole, and leaves no reference cycle
behind. (asyncpg's ``copy_to_table`` given a file object -- e.g. ``io.BytesIO(payload)`` -- defines a class per
call whose methods close over the file: class objects are always in a reference cycle, so every payload stayed
alive until Python's cyclic collector happened to run. A batch-file load allocates few Python objects, so that was
seldom, and the worker's resident memory grew by the COPY payloads in between, longer with longer files.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pyarrow as pa
from pgpq import ArrowToPostgresBinaryEncoder

__all__ = ["COPY_BATCH_ROWS", "binary_copy_pieces", "copy_arrow", "encode_binary_copy", "encoded_pieces"]

COPY_BATCH_ROWS = 16_384
"""Rows per encoded piece (about 1-2 MiB for a claims row)."""


def encoded_pieces(rows: pa.Table, batch_rows: int = COPY_BATCH_ROWS) -> Iterator[bytes]:
    """The binary COPY stream of ``rows``: header, one piece per record batch of at most ``batch_rows``, trailer."""
    encoder = ArrowToPostgresBinaryEncoder(rows.schema)
    yield bytes(encoder.write_header())
    for batch in rows.to_batches(max_chunksize=batch_rows):
        yield bytes(encoder.write_batch(batch))
    yield bytes(encoder.finish())


def encode_binary_copy(rows: pa.Table) -> bytes:
    """``rows`` as one binary COPY payload (for tests and callers that need it whole)."""
    return b"".join(encoded_pieces(rows))


async def binary_copy_pieces(rows: pa.Table, batch_rows: int = COPY_BATCH_ROWS) -> AsyncIterator[bytes]:
    """:func:`encoded_pieces` as the async iterable asyncpg's ``copy_to_table`` streams from."""
    for piece in encoded_pieces(rows, batch_rows):
        yield piece


async def copy_arrow(conn: Any, table: str, rows: pa.Table) -> None:
    """Binary COPY of ``rows`` into ``table`` (its columns named as ``rows``'), streamed; nothing for no rows."""
    if rows.num_rows == 0:
        return
    await conn.copy_to_table(table, source=binary_copy_pieces(rows), columns=list(rows.column_names), format="binary")
