"""Stages: pure, vectorised functions on ``pyarrow.Table`` (no I/O, no boto, no sources/sinks/runtime).

Each stage returns the rows it keeps and the rows it rejects, with a reason and a detail per rejected row.
"""
