"""The X12 reader (workers.formats.x12): mapping, envelopes, versions, bad claims, separators, streaming, fuzz."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadtest.files import PHI_MARKERS, Adjudication, Claim, ClaimLine, Separators, x12_835, x12_837
from workers.formats.feed import FeedChunk
from workers.formats.x12 import read_x12

CLAIMS = [
    Claim("A1", lines=(ClaimLine("99213", "150.00"), ClaimLine("85025", "40.5", dx_pointer=2))),
    Claim("A2", member_id="SUB2", patient_member_id="DEP2", rendering_npi=None),
]


def _read(data: bytes, size: int = 1 << 20) -> list[FeedChunk]:
    return list(read_x12("raw/claims/x12/f.x12", iter([data[i : i + size] for i in range(0, len(data), size)])))


def _rows(chunks: list[FeedChunk], table: str) -> list[dict[str, object]]:
    return [r for c in chunks if table in c.tables for r in c.tables[table].to_pylist()]


def _rejected(chunks: list[FeedChunk]) -> list[dict[str, object]]:
    return [r for c in chunks for r in c.rejected.to_pylist()]


def test_837p_lines_patient_and_provider() -> None:
    rows = _rows(_read(x12_837(CLAIMS)), "claims")
    assert [(r["claim_id"], r["line_number"], r["patient_id"], r["provider_npi"], r["dx_code"], r["billed_amount"],
             r["status"]) for r in rows] == [
        ("A1", 1, "MEM0001", "1234567893", "I10", Decimal("150.00"), "pending"),
        ("A1", 2, "MEM0001", "1234567893", "E119", Decimal("40.50"), "pending"),
        ("A2", 1, "DEP2", "1992753880", "I10", Decimal("150.00"), "pending"),
    ]  # fmt: skip


def test_837i_reads_sv2_and_any_separators() -> None:
    plain = _rows(_read(x12_837(CLAIMS, institutional=True)), "claims")
    odd = Separators(element="|", component="^", repetition="~", segment="!", newline="\r\n")
    assert _rows(_read(x12_837(CLAIMS, institutional=True, sep=odd)), "claims") == plain
    assert [r["procedure_code"] for r in plain] == ["99213", "85025", "99213"]


def test_chunking_does_not_change_the_result() -> None:
    data = x12_837(CLAIMS) + x12_835([Adjudication("A1", "1", ((1, "150", "100", "120", None),))], control=2)
    whole = _read(data)
    assert [c.tables for c in _read(data, 7)] == [c.tables for c in whole]
    assert len(whole) == 1  # decided interchanges are released together, up to x12.MAX_ROWS rows


def test_835_statuses_reasons_and_reversal() -> None:
    remit = x12_835(
        [
            Adjudication("A1", "1", ((1, "150.00", "100.00", "120.00", ("CO", "45", "30")),
                                     (2, "40.50", "0", "0", ("PR", "1", "40.50")))),
            Adjudication("A2", "4", (), claim_adjustment=("CO", "50", "150")),
            Adjudication("A3", "22", ((1, "-10", "-10", "-10", None),)),
        ]
    )  # fmt: skip
    rows = {(r["claim_id"], r["line_number"]): r for r in _rows(_read(remit), "remittances")}
    assert {k: (r["status"], r["allowed_amount"], r["paid_amount"], r["denial_reason"]) for k, r in rows.items()} == {
        ("A1", 1): ("paid", Decimal("120.00"), Decimal("100.00"), None),
        ("A1", 2): ("denied", Decimal("0.00"), Decimal("0.00"), "PR-1"),
        ("A2", 0): ("denied", None, Decimal("0.00"), "CO-50"),
        ("A3", 1): ("pending", None, None, None),
    }
    orders = [r["remit_order"] for r in rows.values()]
    assert orders == sorted(orders)
    assert all(o.startswith("20260120:000000001:") for o in orders)


def test_envelope_errors_quarantine_the_interchange_whole() -> None:
    good = x12_837(CLAIMS, control=1)
    broken = {
        "se count": x12_837(CLAIMS, control=2, break_se_count=True),
        "iea control": good.replace(b"IEA*1*000000001", b"IEA*1*000000009"),
        "ge count": good.replace(b"GE*1*1", b"GE*2*1"),
        "no iea": good[: good.index(b"IEA")],
    }
    for name, data in broken.items():
        chunks = _read(data)
        assert _rows(chunks, "claims") == [], name
        [rejected] = _rejected(chunks)
        assert (rejected["line_number"], rejected["reason"]) == (None, "invalid_envelope"), name
    # A good interchange next to a broken one still loads.
    chunks = _read(good + x12_837([Claim("B1")], control=3, break_se_count=True))
    assert {r["claim_id"] for r in _rows(chunks, "claims")} == {"A1", "A2"}
    assert [r["reason"] for r in _rejected(chunks)] == ["invalid_envelope"]


def test_other_versions_are_unsupported_whole() -> None:
    chunks = _read(x12_837(CLAIMS, version="00401"))
    assert _rows(chunks, "claims") == []
    assert [(r["line_number"], r["reason"]) for r in _rejected(chunks)] == [(None, "unsupported_version")]


def test_what_pyx12_stops_before_is_quarantined_not_dropped() -> None:
    """pyx12 ends its iteration at an empty segment (``~~``) or at text without a terminator, silently: the
    interchanges after that point must be accounted for in the quarantine, not lost without a trace."""
    first, second = x12_837(CLAIMS, control=1), x12_837([Claim("B1")], control=2)
    cut = first.index(b"~", first.index(b"CLM*")) + 1
    for name, data in {
        "empty segment": first[:cut] + b"~" + first[cut:] + second,
        "no terminator": first + b"ISA*00*" + b" " * 70_000,
    }.items():
        chunks = _read(data, 4096)
        reasons = [(r["reason"], r["line_number"] is not None) for r in _rejected(chunks)]
        assert ("unreadable", True) in reasons, name
    # White space, NUL padding and a DOS end-of-file mark after the last segment are not unread data.
    chunks = _read(first + b"\r\n \x00\x1a\n")
    assert _rejected(chunks) == []
    assert {r["claim_id"] for r in _rows(chunks, "claims")} == {"A1", "A2"}


def test_not_x12_is_unreadable() -> None:
    assert [r["reason"] for r in _rejected(_read(b"claim_id,line_number\n1,2\n"))] == ["unreadable"]
    assert [r["reason"] for r in _rejected(_read(b""))] == ["unreadable"]


def test_a_bad_claim_alone_at_its_clm_position() -> None:
    data = x12_837([Claim("OK1"), Claim("BAD", lines=(ClaimLine(billed="12.345"),)), Claim("OK2")])
    chunks = _read(data)
    assert [r["claim_id"] for r in _rows(chunks, "claims")] == ["OK1", "OK2"]
    segments = data.decode().split("~\n")
    position = next(i for i, s in enumerate(segments, start=1) if s.startswith("CLM*BAD*"))
    assert [(r["line_number"], r["reason"], r["record_id"]) for r in _rejected(chunks)] == [
        (position, "invalid_claim", "BAD")
    ]


def test_no_phi_in_any_output() -> None:
    data = x12_837(CLAIMS) + x12_835([Adjudication("A1", "4", ((1, "150", "0", "0", ("CO", "50", "1")),))], control=2)
    data += x12_837([Claim("BAD", rendering_npi="1")], control=3) + x12_837(CLAIMS, control=4, break_se_count=True)
    text = " ".join(str(t.to_pylist()) for c in _read(data) for t in (*c.tables.values(), c.rejected))
    for marker in PHI_MARKERS:
        assert marker not in text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_interchanges_never_raise(data: st.DataObject) -> None:
    """Hand-written mapping over pyx12's segments: bytes overwritten, deleted or cut never raise, and every
    output row is well-typed."""
    raw = bytearray(x12_837(CLAIMS) + x12_835([Adjudication("A1", "1", ((1, "150", "100", "120", None),))], control=2))
    for _ in range(data.draw(st.integers(0, 6))):
        at = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["set", "delete", "cut"]))
        if action == "set":
            raw[at] = data.draw(st.sampled_from(list(b"*:~^|0123456789AZ-. \n\x00\xff")))
        elif action == "delete":
            del raw[at]
        else:
            del raw[at:]
        if not raw:
            break
    for chunk in _read(bytes(raw), data.draw(st.integers(1, 300))):
        for table in chunk.tables.values():
            assert isinstance(table, pa.Table)
        for row in chunk.rejected.to_pylist():
            assert row["reason"]


def test_a_broken_hl_hierarchy_quarantines_the_claims_under_it() -> None:
    data = x12_837(CLAIMS).replace(b"HL*4*3*22*", b"HL*4*9*22*")  # a subscriber whose parent HL is missing
    chunks = _read(data)
    assert [r["claim_id"] for r in _rows(chunks, "claims")] == []
    assert {(r["reason"], r["record_id"]) for r in _rejected(chunks)} == {
        ("invalid_claim", "A1"),
        ("invalid_claim", "A2"),
    }
    # Trailing element separators are tolerated.
    assert len(_rows(_read(x12_837(CLAIMS).replace(b"LX*1~", b"LX*1*~")), "claims")) == 3
