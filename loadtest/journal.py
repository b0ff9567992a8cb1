"""The journal of a run: one JSON line per request as the client finally saw it (:class:`loadtest.truth.Sent`).

Each process of a run writes its own file (``journal-<name>.jsonl``) in the run's directory, a line at a
time and flushed, so a journal survives its writer being stopped; :func:`loadtest.reconcile.read_journal`
reads them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import orjson

from loadtest.truth import Sent


class Journal:
    def __init__(self, directory: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"journal-{name}.jsonl"
        self._file: IO[bytes] = self.path.open("ab")

    def write(self, sent: Sent) -> None:
        self._file.write(orjson.dumps(sent.to_json()) + b"\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
