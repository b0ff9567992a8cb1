"""A database restart is transient: the batch in flight is retried, never quarantined (found by `make chaos`)."""

from __future__ import annotations

import asyncpg

from common.errors import TerminalError, TransientError, classify


def test_a_statement_on_a_connection_the_server_closed_is_retried() -> None:
    # What asyncpg's Connection._check_open raises once PostgreSQL's fast shutdown has ended the session.
    assert classify(asyncpg.InterfaceError("connection is closed")) is TransientError
    assert classify(asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")) is (
        TransientError
    )


def test_a_client_state_broken_by_the_server_going_away_is_retried() -> None:
    # Seen in `make chaos` (pgstop) after the fix above: a batch quarantined on asyncpg's InternalClientError.
    error = asyncpg.InternalClientError("unexpected error while performing authentication: connection lost")
    assert classify(error) is TransientError


def test_other_interface_errors_stay_terminal() -> None:
    assert classify(asyncpg.InterfaceError("the number of query arguments cannot exceed 32767")) is TerminalError
