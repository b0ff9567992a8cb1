"""X12 and DMS CDC readers vs the floor of reading the same bytes, in one run, one core (no network, no SQL).

- ``x12_claim_lines_per_s``: :func:`workers.formats.x12.read_x12` on an 837P of 10,000 claims x 2 service lines
  (tokenise + envelope checks + mapping + Arrow). Baseline ``pyx12_tokenise_lines_per_s``: pyx12's
  ``X12Reader`` iterating the same bytes with no mapping (the library's own floor).
- ``cdc_changes_per_s``: :func:`workers.formats.cdc.read_cdc` on a DMS CDC CSV of 400,000 patient changes
  (streamed, validated, Safe Harbor ZIPs, Arrow). Baseline ``arrow_csv_rows_per_s``: ``pyarrow.csv.read_csv`` of
  the same bytes as strings (the floor of reading them at all).

Prints each figure, its baseline and the ratio (``x12_vs_pyx12_tokenise``, ``cdc_vs_arrow_csv``).

Bounded memory: ``feed_peak_rss_mib_<format>_<small|large>`` is the peak RSS (``VmHWM``) of a fresh
process that streams a file from local disk in the handler's read size through the pipeline's own
:data:`~workers.pipelines.files.StreamParser` (the code the file handler runs in its worker thread) and encodes
every chunk's tables as the lake's Parquet parts, for a file and one 10 times larger (X12 837P 5,000 / 50,000
claims; HL7 ADT 2,000 / 20,000 messages with a 1,000-message chunk; DMS CDC CSV 100,000 / 1,000,000 changes,
the smaller already several 4 MiB blocks; DMS CDC Parquet in 10,000-row groups, 40,000 / 400,000 changes);
``feed_peak_rss_<format>_large_over_small`` is their ratio (the target: within 1.2). S3 and the warehouse are
left out (``bench.batchfiles`` measures the whole handler on CSV).
"""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from pyx12.x12file import X12Reader

from loadtest.files import Adt, Claim, ClaimLine, cdc_file, hl7_file, x12_837
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


_RSS_KEYS = {
    "x12": "raw/claims/x12/bench.x12",
    "hl7": "raw/ehr/hl7/bench.hl7",
    "cdc_csv": "raw/ehr/cdc/dbo/patients/20260105-100000000.csv",
    "cdc_parquet": "raw/ehr/cdc/dbo/patients/20260105-100000000.parquet",
}
_HL7_ROWS = 1_000


def _rss_file(fmt: str, n: int) -> bytes:
    """A generated file of ``n`` claims / messages / changes (names and addresses included, as received)."""
    if fmt == "x12":
        lines = (ClaimLine("99213", "150.00"), ClaimLine("85025", "40.00", dx_pointer=2))
        return x12_837([Claim(f"C{i:07d}", member_id=f"M{i % 997:05d}", lines=lines) for i in range(n)])
    if fmt == "hl7":
        events = ("A01", "A02", "A08", "A03")
        return hl7_file([Adt(f"M{i:07d}", f"2026010{5 + i % 4}1015", events[i % 4], f"P{i % 5000}",
                             visit=f"V{i % 7000}", dx="I10") for i in range(n)], "crlf")  # fmt: skip
    person = {"family_name": "Zyxwvut", "given_name": "Qwertyuiop", "birth_date": "1959-12-31", "sex": "female",
              "postal_code": "02139", "street_address": "742 Evergreen Terrace"}  # fmt: skip
    rows = [{"Op": "UID"[i % 3], "dms_commit_ts": f"2026-01-05 10:{i // 6000 % 60:02d}:{i // 100 % 60:02d}.{i:06d}",
             "patient_id": f"P{i % 50_000}", **person} for i in range(n)]  # fmt: skip
    if fmt == "cdc_csv":
        return cdc_file(rows)
    table = pa.table({c: pa.array([str(r[c]) for r in rows], pa.string()) for c in rows[0]})
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=10_000)  # DMS's default RowGroupLength
    return out.getvalue()


def _measure(fmt: str, path: str) -> dict[str, float]:
    """In this (fresh) process: stream ``path`` through the pipeline parser; rows and peak RSS."""
    from workers.pipelines import claims, ehr
    from workers.pipelines.files import FileSettings
    from workers.sinks.files_s3 import parquet_bytes

    parse = claims.claims_parser() if fmt == "x12" else ehr.ehr_parser(hl7_rows=_HL7_ROWS)
    read = FileSettings().read_bytes

    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as file:
            while block := file.read(read):
                yield block

    rows = chunks_seen = 0
    for parsed in parse(_RSS_KEYS[fmt], chunks()):
        chunks_seen += 1
        for table in parsed.tables.values():
            rows += table.num_rows
            parquet_bytes(table)
    return {"rows": rows, "chunks": chunks_seen, "maxrss_mib": _peak_rss_mib()}


def _peak_rss_mib() -> float:
    """This process's own peak RSS: ``VmHWM`` (``ru_maxrss`` would carry the parent's peak over fork + exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_figures() -> dict[str, float]:
    sizes = {"x12": 5_000, "hl7": 2_000, "cdc_csv": 100_000, "cdc_parquet": 40_000}
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-feeds-") as tmp:
        for fmt, small in sizes.items():
            for label, n in (("small", small), ("large", small * 10)):
                path = Path(tmp) / f"{fmt}-{label}"
                path.write_bytes(_rss_file(fmt, n))
                mib = path.stat().st_size / (1 << 20)
                done = subprocess.run([sys.executable, "-m", "bench.feeds", "--rss", fmt, str(path)],
                                      check=True, capture_output=True, text=True, timeout=900)  # fmt: skip
                out = json.loads(done.stdout.strip().splitlines()[-1])
                path.unlink()
                figures[f"feed_peak_rss_mib_{fmt}_{label}"] = out["maxrss_mib"]
                print(f"feed_peak_rss_mib_{fmt}_{label}: {out['maxrss_mib']:.0f}  ({mib:.1f} MiB file, "
                      f"{out['rows']:,.0f} rows in {out['chunks']:.0f} chunks)", flush=True)  # fmt: skip
            ratio = figures[f"feed_peak_rss_mib_{fmt}_large"] / figures[f"feed_peak_rss_mib_{fmt}_small"]
            figures[f"feed_peak_rss_{fmt}_large_over_small"] = ratio
            print(f"feed_peak_rss_{fmt}_large_over_small: {ratio:.2f}  (target: at most 1.20)", flush=True)
    return figures


def run() -> None:
    ours, floor = x12_figures()
    print(f"x12_claim_lines_per_s: {ours:,.0f}")
    print(f"pyx12_tokenise_lines_per_s: {floor:,.0f}  (baseline: pyx12 X12Reader over the same 837P, no mapping)")
    print(f"x12_vs_pyx12_tokenise: {ours / floor:.3f}")
    ours, floor = cdc_figures()
    print(f"cdc_changes_per_s: {ours:,.0f}")
    print(f"arrow_csv_rows_per_s: {floor:,.0f}  (baseline: pyarrow.csv.read_csv of the same DMS CSV as strings)")
    print(f"cdc_vs_arrow_csv: {ours / floor:.3f}")
    rss_figures()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rss"]:
        print(json.dumps(_measure(sys.argv[2], sys.argv[3])))
    else:
        run()
