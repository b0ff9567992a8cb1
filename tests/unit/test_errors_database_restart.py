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


def test_other_interface_errors_stay_terminal() -> None:
    assert classify(asyncpg.InterfaceError("the number of query arguments cannot exceed 32767")) is TerminalError
