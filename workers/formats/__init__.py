"""File formats of the batch feeds: pure functions from bytes to Arrow tables (no I/O, no boto, no sources,
sinks, warehouse or runtime).

Each reader returns the good rows in their ``schemas.arrow`` schema and the rejected rows (``common.REJECTED``:
line number, reason code, a detail that names a field but never a value). ``common`` and ``values`` hold what
the readers share (CSV reading, row checks, value parsers).
"""
