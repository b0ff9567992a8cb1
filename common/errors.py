"""Errors typed by retryability, decided in one place.

``TransientError``: the same call may succeed later (throttling, timeouts, a database restart).
``TerminalError``: retrying cannot help (bad input, missing resource, permission denied); the
offending records are routed to quarantine and the batch goes on.
"""

from __future__ import annotations

import asyncio
import errno

import asyncpg
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)


class VitalstreamError(Exception):
    """Base class of the project's own errors."""


class TransientError(VitalstreamError):
    """A failure that may go away if the same operation is retried."""


class TerminalError(VitalstreamError):
    """A failure that retrying cannot fix."""


TRANSIENT_AWS_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "KMSThrottlingException",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "TransactionInProgressException",
        "ExpiredIteratorException",
        "ActiveStatementsExceededException",
    }
)

# SQLSTATE classes/codes worth retrying: connection exceptions, serialization failures,
# deadlocks, operator intervention (shutdown), insufficient resources.
TRANSIENT_SQLSTATE_PREFIXES = ("08", "53", "57P")
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03"})


def classify(exc: BaseException) -> type[TransientError] | type[TerminalError]:
    """Decide whether ``exc`` is worth retrying.

    Knows botocore client/transport errors, asyncpg/PostgreSQL SQLSTATEs (any exception with a
    ``sqlstate`` attribute), OS-level connection errors and the project's own typed errors.
    Anything unknown is terminal: retrying an unknown bug forever would stall the pipeline.
    """
    if isinstance(exc, TransientError):
        return TransientError
    if isinstance(exc, TerminalError):
        return TerminalError
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in TRANSIENT_AWS_CODES or status >= 500 or status == 429:
            return TransientError
        return TerminalError
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError | ConnectionClosedError):
        return TransientError
    if isinstance(exc, BotoCoreError):
        return TransientError if "connect" in type(exc).__name__.lower() else TerminalError
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        if sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith(TRANSIENT_SQLSTATE_PREFIXES):
            return TransientError
        return TerminalError
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | ConnectionError):
        return TransientError
    if isinstance(exc, OSError) and exc.errno in {errno.ECONNREFUSED, errno.ECONNRESET, errno.EPIPE}:
        return TransientError
    if _database_connection_closed(exc):
        return TransientError
    return TerminalError


def _database_connection_closed(exc: BaseException) -> bool:
    """asyncpg's errors without a SQLSTATE that a database restart, failover or fast shutdown produces:
    ``InterfaceError('connection is closed')`` (a statement on a pooled connection whose session has ended) and
    ``InternalClientError`` (the pool or protocol state broken by the server going away mid-exchange, e.g.
    "unexpected error while performing authentication" while it shuts down). Both seen in ``make chaos``
    (pgstop), where classifying them terminal quarantined a whole vitals batch. Retrying a genuine client bug
    stalls the shard visibly (lag) instead of losing its readings."""
    if isinstance(exc, asyncpg.InternalClientError):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)


def is_transient(exc: BaseException) -> bool:
    """True when :func:`classify` says ``exc`` is worth retrying."""
    return classify(exc) is TransientError
