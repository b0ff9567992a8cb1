"""The X12, HL7 v2 and DMS CDC readers stream: read in small byte chunks (boundaries inside segments, messages
and CSV rows) and with small row bounds, each file gives the rows of the file read whole, once the cross-chunk
rules are applied as the file handler and the warehouse apply them (last claim line per key by
``source_line``, newest remittance by ``remit_order``; chunks of a retracted X12 interchange dropped)."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadtest.files import Adjudication, Adt, Claim, ClaimLine, cdc_file, hl7_file, x12_835, x12_837
from workers.formats.cdc import read_cdc
from workers.formats.feed import FeedChunk
from workers.formats.hl7 import read_hl7
from workers.formats.x12 import read_x12

SIZES = st.one_of(st.sampled_from([1, 64, 1024]), st.integers(1, 4096))
WHOLE = 1 << 30


def _split(data: bytes, size: int) -> Iterator[bytes]:
    return iter([data[i : i + size] for i in range(0, len(data), size)])


def _key(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted((k, repr(v)) for k, v in row.items()))


def effective(chunks: list[FeedChunk]) -> dict[str, list[tuple[str, ...]]]:
    """What the handler stages and the warehouse keeps of ``chunks``: rows per table (claims: the last line per
    key; remittances: the newest per key) and rejected rows, order-free."""
    retracted = {c.retracts for c in chunks if c.retracts is not None}
    kept = [c for c in chunks if c.part is None or c.part not in retracted]
    out: dict[str, list[tuple[str, ...]]] = {}
    for name in sorted({n for c in kept for n in c.tables}):
        rows = [r for c in kept if name in c.tables for r in c.tables[name].to_pylist()]
        if name in ("claims", "remittances"):
            order = "source_line" if name == "claims" else "remit_order"
            last: dict[tuple[object, object], dict[str, Any]] = {}
            for row in rows:
                key = (row["claim_id"], row["line_number"])
                if key not in last or last[key][order] < row[order]:
                    last[key] = row
            rows = list(last.values())
        out[name] = sorted(_key(r) for r in rows)
    out["rejected"] = sorted(_key(r) for c in kept for r in c.rejected.to_pylist())
    return out


# -- X12 ------------------------------------------------------------------------------------------------------

_LINES = (ClaimLine("99213", "150.00"), ClaimLine("85025", "40.00", dx_pointer=2))
X12 = (
    x12_837([Claim(f"A{i}", lines=_LINES) for i in range(5)] + [Claim("BAD", lines=(ClaimLine(billed="1.234"),))],
            control=1)
    + x12_835([Adjudication("A1", "1", ((1, "150", "100", "120", None),)),
               Adjudication("A2", "4", (), claim_adjustment=("CO", "50", "150")),
               Adjudication("A1", "22", ((1, "-150", "-100", "-120", None),)),
               Adjudication("A1", "1", ((1, "150", "90", "110", None),))], control=2)
    + x12_837([Claim(f"E{i}", lines=_LINES) for i in range(8)], control=3, break_se_count=True)
    + x12_837([Claim("A0", lines=(ClaimLine("99214", "99.00"),))], control=4)  # A0 line 1 again: this one wins
    + x12_837([Claim("OLD")], control=5, version="00401")
)  # fmt: skip


def _x12(size: int, max_rows: int = 10_000) -> list[FeedChunk]:
    return list(read_x12("raw/claims/x12/f.x12", _split(X12, size), max_rows=max_rows))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=SIZES, max_rows=st.integers(1, 40))
def test_x12_in_chunks_and_row_bounds_gives_the_whole_files_rows(size: int, max_rows: int) -> None:
    assert effective(_x12(size, max_rows)) == effective(_x12(WHOLE))


def test_x12_whole_read_is_as_expected() -> None:
    result = effective(_x12(WHOLE))
    assert len(result["claims"]) == 10  # A0..A4 x 2 lines; A0 line 1 replaced by interchange 4's
    assert not any(dict(r)["claim_id"].startswith("'E") for r in result["claims"])
    reasons = sorted(dict(r)["reason"] for r in result["rejected"])
    assert reasons == ["'invalid_claim'", "'invalid_envelope'", "'unsupported_version'"]
    a0 = [dict(r) for r in result["claims"] if dict(r)["claim_id"] == "'A0'" and dict(r)["line_number"] == "1"]
    assert [r["billed_amount"] for r in a0] == ["Decimal('99.00')"]
    remits = {(dict(r)["claim_id"], dict(r)["line_number"]): dict(r) for r in result["remittances"]}
    assert remits[("'A1'", "1")]["paid_amount"] == "Decimal('90.00')"  # the correction after the reversal


def test_a_large_interchange_is_released_early_and_retracted_when_its_envelope_fails() -> None:
    chunks = _x12(1024, max_rows=4)
    assert {c.part for c in chunks if c.part is not None} >= {1, 3}  # interchanges 1 and 3 outgrew 4 rows
    [retraction] = [c for c in chunks if c.retracts is not None]
    assert retraction.retracts == 3
    assert [r["reason"] for r in retraction.rejected.to_pylist()] == ["invalid_envelope"]
    released = [r["claim_id"] for c in chunks if c.part == 3 for r in c.tables["claims"].to_pylist()]
    assert released
    assert set(released) <= {f"E{i}" for i in range(8)}
    assert max(t.num_rows for c in chunks for t in (*c.tables.values(), c.rejected)) <= 4 + 2  # bound + a claim
    whole = _x12(WHOLE)
    assert len(whole) == 1  # decided interchanges are released together
    assert all(c.part is None and c.retracts is None and not c.whole_file for c in whole)


def test_a_structure_error_after_release_fails_the_interchange() -> None:
    """A broken HL hierarchy rejects the claims of its transaction set; once some of them were released the
    interchange is rejected whole instead (documented in workers.formats.x12)."""
    claims = [Claim(f"H{i}", member_id=f"S{i}") for i in range(6)]
    data = x12_837(claims).replace(b"HL*8*7*22*", b"HL*8*99*22*")
    held = list(read_x12("raw/claims/x12/h.x12", iter([data])))
    assert {r["reason"] for c in held for r in c.rejected.to_pylist()} == {"invalid_claim"}
    released = list(read_x12("raw/claims/x12/h.x12", iter([data]), max_rows=2))
    assert effective(released)["rejected"]
    assert all(dict(r)["reason"] == "'invalid_envelope'" for r in effective(released)["rejected"])
    assert "claims" not in effective(released)


def test_only_an_unreadable_file_is_a_whole_file_rejection() -> None:
    [chunk] = list(read_x12("raw/claims/x12/n.x12", iter([b"not x12 at all"])))
    assert chunk.whole_file
    single = list(read_x12("raw/claims/x12/s.x12", iter([x12_837([Claim("Z")], break_se_count=True)])))
    assert [c.whole_file for c in single] == [False]  # an interchange's rejection, even with a null line


# -- HL7 v2 ---------------------------------------------------------------------------------------------------

ADT = [
    Adt(f"M{i}", f"202601{5 + i % 20:02d}1015", ("A01", "A02", "A03", "A08", "A05")[i % 5], f"P{i % 4}",
        visit=f"V{i % 4}", dx="I10")
    for i in range(30)
]  # fmt: skip


_HL7_WHOLE: dict[str, dict[str, list[tuple[str, ...]]]] = {}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(framing=st.sampled_from(["cr", "lf", "crlf", "mllp", "batch"]), size=SIZES, max_rows=st.integers(1, 12))
def test_hl7_in_chunks_and_row_bounds_gives_the_whole_files_rows(framing: str, size: int, max_rows: int) -> None:
    data = hl7_file(ADT, framing)
    if framing not in _HL7_WHOLE:
        _HL7_WHOLE[framing] = effective(list(read_hl7("raw/ehr/hl7/a.hl7", iter([data]))))
    whole = _HL7_WHOLE[framing]
    chunks = list(read_hl7("raw/ehr/hl7/a.hl7", _split(data, size), max_rows=max_rows))
    assert effective(chunks) == whole
    assert len(whole["adt_events"]) == 24
    assert len(whole["rejected"]) == 6  # A05: unsupported
    assert len(chunks) == -(-30 // max_rows)
    assert not any(c.whole_file for c in chunks)


# -- DMS CDC --------------------------------------------------------------------------------------------------

P = "raw/ehr/cdc/dbo/patients/"


def _changes(n: int) -> list[dict[str, object]]:
    return [
        {"Op": "IUD"[i % 3], "dms_commit_ts": f"2026-01-05 10:00:{i % 60:02d}.{i:06d}", "patient_id": f"P{i % 9}",
         "family_name": "Zyxwvut", "given_name": "Qwertyuiop", "birth_date": "1959-12-31", "sex": "female",
         "postal_code": "02139", "street_address": "742 Evergreen Terrace, Apt \"4\"\nSpringfieldia"}
        for i in range(n)
    ]  # fmt: skip


CDC_CSV = cdc_file([*_changes(60), {"Op": "X", "dms_commit_ts": "bad", "patient_id": "P1"}])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=SIZES, block=st.sampled_from([512, 1024, 4096]))
def test_cdc_csv_in_chunks_and_blocks_gives_the_whole_files_rows(size: int, block: int) -> None:
    whole = list(read_cdc(P + "20260105-1.csv", iter([CDC_CSV])))
    chunks = list(read_cdc(P + "20260105-1.csv", _split(CDC_CSV, size), block_size=block))
    assert effective(chunks) == effective(whole)
    assert len(effective(whole)["patient_changes"]) == 60
    assert len(effective(whole)["rejected"]) == 1
    if block < 4096:
        assert len(chunks) > 1


def _parquet(rows: list[dict[str, object]], row_group: int) -> bytes:
    table = pa.table({c: pa.array([str(r[c]) for r in rows], pa.string()) for c in rows[0]})
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=row_group)
    return out.getvalue()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=SIZES, row_group=st.integers(1, 70))
def test_cdc_parquet_by_row_group_gives_the_whole_files_rows(size: int, row_group: int) -> None:
    data = _parquet(_changes(60), row_group)
    whole = list(read_cdc(P + "20260105-1.parquet", iter([_parquet(_changes(60), 60)])))  # one row group
    chunks = list(read_cdc(P + "20260105-1.parquet", _split(data, size)))
    assert len(chunks) == -(-60 // row_group)
    assert effective(chunks) == effective(whole)
    assert len(effective(whole)["patient_changes"]) == 60


def test_a_cdc_file_unreadable_in_a_later_block_is_a_whole_file_rejection_last() -> None:
    data = CDC_CSV + b'I,2026-01-05 10:00:00,P1,a,b,c,d,e,f,"g,too,many\n'
    chunks = list(read_cdc(P + "20260105-1.csv", _split(data, 64), block_size=512))
    assert len(chunks) > 2
    assert chunks[-1].whole_file
    assert [r["reason"] for r in chunks[-1].rejected.to_pylist()] == ["unreadable"]
    assert not any(c.whole_file for c in chunks[:-1])


def test_a_cdc_record_longer_than_a_block_is_read_up_to_four_blocks() -> None:
    rows = _changes(6)
    long = [*rows[:3], rows[3] | {"street_address": "x\n" * 1200}, *rows[4:]]  # a 2.4 kB quoted field
    data = cdc_file(long)
    whole = list(read_cdc(P + "20260105-1.csv", iter([data])))
    chunks = list(read_cdc(P + "20260105-1.csv", _split(data, 64), block_size=1024))
    assert effective(chunks) == effective(whole)
    assert len(effective(whole)["patient_changes"]) == 6
    too_long = cdc_file([*rows[:3], rows[3] | {"street_address": "x" * 5000}, *rows[4:]])
    chunks = list(read_cdc(P + "20260105-1.csv", _split(too_long, 64), block_size=1024))
    assert chunks[-1].whole_file
    assert [r["reason"] for r in chunks[-1].rejected.to_pylist()] == ["unreadable"]


_LONG = [*ADT[:3], Adt("LONG1", "20260107", "A08", "P1", dx="I10" + "9" * 600), *ADT[3:6]]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=SIZES, framing=st.sampled_from(["cr", "crlf", "mllp"]))
def test_an_hl7_message_over_the_size_limit_is_rejected_without_being_held(size: int, framing: str) -> None:
    data = hl7_file(_LONG, framing)
    whole = effective(list(read_hl7("raw/ehr/hl7/a.hl7", iter([data]), max_message_bytes=500)))
    chunks = list(read_hl7("raw/ehr/hl7/a.hl7", _split(data, size), max_message_bytes=500))
    assert effective(chunks) == whole
    [long] = [dict(r) for r in whole["rejected"] if "LONG1" in dict(r)["detail"]]
    assert (long["reason"], long["record_id"]) == ("'invalid_message'", "'LONG1'")
    # The other messages keep the lines they have in the file read with no limit.
    unlimited = effective(list(read_hl7("raw/ehr/hl7/a.hl7", iter([data]))))
    assert whole["adt_events"] == unlimited["adt_events"]


def test_hl7_without_line_breaks_stays_in_bounded_memory() -> None:
    def stream() -> Iterator[bytes]:
        yield hl7_file(ADT[:2])
        yield b"MSH|^~\\&|ADT|HOSP|EHR|HOSP|20260105||ADT^A08^ADT_A01|BIG|P|2.5\rPID|1||"
        for _ in range(320):  # 20 MiB with no segment end
            yield b"A" * (64 << 10)
        yield b"\r" + hl7_file(ADT[2:4])

    tracemalloc.start()
    try:
        chunks = list(read_hl7("raw/ehr/hl7/a.hl7", stream(), max_message_bytes=1 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 << 20, peak
    result = effective(chunks)
    assert len(result["adt_events"]) == 4
    assert [dict(r)["record_id"] for r in result["rejected"]] == ["'BIG'"]
