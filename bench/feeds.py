"""X12 and DMS CDC readers vs the floor of reading the same bytes, in one run, one core (no network, no SQL).

- ``x12_claim_lines_per_s``: :func:`workers.formats.x12.read_x12` on an 837P of 10,000 claims x 2 service lines
  (tokenise + envelope checks + mapping + Arrow). Baseline ``pyx12_tokenise_lines_per_s``: pyx12's
  ``X12Reader`` iterating the same bytes with no mapping (the library's own floor).
- ``cdc_changes_per_s``: :func:`workers.formats.cdc.read_cdc` on a DMS CDC CSV of 400,000 patient changes
  (streamed, validated, Safe Harbor ZIPs, Arrow). Baseline ``arrow_csv_rows_per_s``: ``pyarrow.csv.read_csv`` of
  the same bytes as strings (the floor of reading them at all).

Prints each figure, its baseline and the ratio (``x12_vs_pyx12_tokenise``, ``cdc_vs_arrow_csv``).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable

import pyarrow as pa
import pyarrow.csv as pcsv
from pyx12.x12file import X12Reader

from loadtest.files import Claim, ClaimLine, cdc_file, x12_837
from workers.formats.cdc import read_cdc
from workers.formats.x12 import read_x12

CHUNK = 1 << 20


def _best(fn: Callable[[], int], repeat: int = 3) -> tuple[int, float]:
    best = float("inf")
    count = 0
    for _ in range(repeat):
        started = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - started)
    return count, best


def _chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def x12_figures(claims: int = 10_000) -> tuple[float, float]:
    lines = (ClaimLine("99213", "150.00"), ClaimLine("85025", "40.00", dx_pointer=2))
    data = x12_837([Claim(f"C{i:07d}", member_id=f"M{i % 997:05d}", lines=lines) for i in range(claims)])

    def ours() -> int:
        return sum(c.tables["claims"].num_rows for c in read_x12("raw/claims/x12/bench.x12", iter(_chunks(data))))

    def floor() -> int:
        text = io.TextIOWrapper(io.BytesIO(data), encoding="latin-1", newline="")
        segments = sum(1 for _ in X12Reader(text))
        return segments * 0 + claims * len(lines)  # same unit (claim lines) for the ratio

    rows, seconds = _best(ours)
    assert rows == claims * len(lines), rows
    base_rows, base_seconds = _best(floor)
    return rows / seconds, base_rows / base_seconds


def cdc_figures(changes: int = 400_000) -> tuple[float, float]:
    person = {"family_name": "Zyxwvut", "given_name": "Qwertyuiop", "birth_date": "1959-12-31", "sex": "female",
              "postal_code": "02139", "street_address": "742 Evergreen Terrace"}  # fmt: skip
    rows = [{"Op": "UID"[i % 3], "dms_commit_ts": f"2026-01-05 10:{i // 6000 % 60:02d}:{i // 100 % 60:02d}.{i:06d}",
             "patient_id": f"P{i % 50_000}", **person} for i in range(changes)]  # fmt: skip
    data = cdc_file(rows)
    key = "raw/ehr/cdc/dbo/patients/20260105-100000000.csv"

    def ours() -> int:
        return sum(c.tables["patient_changes"].num_rows for c in read_cdc(key, iter(_chunks(data))))

    def floor() -> int:
        names = data.split(b"\n", 1)[0].decode().split(",")
        table = pcsv.read_csv(
            pa.py_buffer(data),
            read_options=pcsv.ReadOptions(use_threads=False),
            convert_options=pcsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
        )
        return int(table.num_rows)

    count, seconds = _best(ours)
    assert count == changes, count
    base, base_seconds = _best(floor)
    return count / seconds, base / base_seconds


def run() -> None:
    ours, floor = x12_figures()
    print(f"x12_claim_lines_per_s: {ours:,.0f}")
    print(f"pyx12_tokenise_lines_per_s: {floor:,.0f}  (baseline: pyx12 X12Reader over the same 837P, no mapping)")
    print(f"x12_vs_pyx12_tokenise: {ours / floor:.3f}")
    ours, floor = cdc_figures()
    print(f"cdc_changes_per_s: {ours:,.0f}")
    print(f"arrow_csv_rows_per_s: {floor:,.0f}  (baseline: pyarrow.csv.read_csv of the same DMS CSV as strings)")
    print(f"cdc_vs_arrow_csv: {ours / floor:.3f}")


if __name__ == "__main__":
    run()
