"""The HL7 v2 ADT reader (workers.formats.hl7): framing, message splitting over chunk boundaries, mapping,
rejections by MSH-10, no PHI; hypothesis: the hand-written message splitting never raises or loses a message."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from loadtest.files import PHI_MARKERS, Adt, hl7_file
from workers.formats.feed import FeedChunk
from workers.formats.hl7 import read_hl7, split_messages

MESSAGES = [
    Adt("M1", "20260105101500+0100", "A01", "P1", visit="V1", admit="20260105100000", dx="I10"),
    Adt("M2", "20260106", "A03", "P1", visit="V1", discharge="20260106120000", postal="89301"),
    Adt("M3", "20260107", "A40", "P2", prior="P1", sex="M"),
]


def _read(data: bytes, size: int = 1 << 20) -> list[FeedChunk]:
    return list(read_hl7("raw/ehr/hl7/a.hl7", iter([data[i : i + size] for i in range(0, len(data), size)])))


def _rows(chunks: list[FeedChunk]) -> list[dict[str, object]]:
    return [
        {k: v for k, v in r.items() if k != "source_line"} for c in chunks for r in c.tables["adt_events"].to_pylist()
    ]


def test_mapping() -> None:
    rows = _rows(_read(hl7_file(MESSAGES)))
    assert [(r["message_control_id"], r["event"], r["patient_id"], r["prior_patient_id"], r["encounter_id"])
            for r in rows] == [("M1", "A01", "P1", None, "V1"), ("M2", "A03", "P1", None, "V1"),
                               ("M3", "A40", "P2", "P1", None)]  # fmt: skip
    first = rows[0]
    assert first["message_ts"] == dt.datetime(2026, 1, 5, 9, 15, tzinfo=dt.UTC)  # +0100 -> UTC
    assert (first["encounter_type"], first["provider_id"], first["primary_dx"]) == ("inpatient", "DR7", "I10")
    assert (first["birth_date"], first["sex"], first["postal_code"]) == (dt.date(1959, 12, 31), "female", "021")
    assert rows[1]["discharge_at"] == dt.datetime(2026, 1, 6, 12, tzinfo=dt.UTC)
    assert rows[1]["postal_code"] == "000"  # Safe Harbor restricted area
    assert rows[2]["sex"] == "male"


def test_every_framing_and_chunking_gives_the_same_rows() -> None:
    expected = _rows(_read(hl7_file(MESSAGES)))
    for framing in ("lf", "crlf", "mllp", "batch"):
        for size in (1, 7, 64):
            assert _rows(_read(hl7_file(MESSAGES, framing), size)) == expected, (framing, size)


def test_unusable_messages_are_rejected_by_their_control_id() -> None:
    bad = [
        Adt("X1", "2026-01-05", "A01", "P1", visit="V1"),
        Adt("X2", "20260105", "A05", "P1", visit="V1"),
        Adt("X3", "20260105", "A01", "P1"),
        Adt("", "20260105", "A08", "P1"),
        Adt("X5", "20260105", "A40", "P2"),
    ]
    chunks = _read(hl7_file([*bad, MESSAGES[0]]))
    assert [r["message_control_id"] for r in _rows(chunks)] == ["M1"]
    rejected = [(r["reason"], r["record_id"], r["detail"]) for c in chunks for r in c.rejected.to_pylist()]
    assert rejected == [
        ("invalid_message", "X1", "message X1: MSH-7: not an HL7 date/time"),
        (
            "unsupported_event",
            "X2",
            "message X2: MSH-9: not an ADT event this feed handles (A01-A04, A08, A11, A13, A40)",
        ),
        ("invalid_message", "X3", "message X3: PV1-19: visit number is missing"),
        ("invalid_message", None, "message (no MSH-10): MSH-10: message control id is missing"),
        ("invalid_message", "X5", "message X5: MRG-1: merged patient identifier is missing"),
    ]
    assert [r["line_number"] for c in chunks for r in c.rejected.to_pylist()] == [1, 5, 9, 12, 15]


def test_no_phi_in_any_output() -> None:
    text = " ".join(str(t.to_pylist()) for c in _read(hl7_file([*MESSAGES, Adt("", "x", "A01", "P")]))
                    for t in (*c.tables.values(), c.rejected))  # fmt: skip
    for marker in PHI_MARKERS:
        assert marker not in text


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_splitting_never_raises_nor_loses_messages(data: st.DataObject) -> None:
    raw = bytearray(hl7_file(MESSAGES, data.draw(st.sampled_from(["cr", "lf", "crlf", "mllp", "batch"]))))
    intact = bytes(raw)
    size = data.draw(st.integers(1, 50))
    assert len(list(split_messages(iter([intact[i : i + size] for i in range(0, len(intact), size)])))) == 3
    for _ in range(data.draw(st.integers(0, 8))):
        at = data.draw(st.integers(0, len(raw) - 1))
        if data.draw(st.booleans()):
            raw[at] = data.draw(st.sampled_from(list(b"|^~\\&\r\n\x0b\x1cMSH0123456789A \xff")))
        else:
            del raw[at]
        if not raw:
            break
    for chunk in _read(bytes(raw), size):
        for row in chunk.rejected.to_pylist():
            assert row["reason"] in ("invalid_message", "unsupported_event", "unreadable")
            assert (row["reason"] == "unreadable") == (row["line_number"] is None)  # no MSH left: not HL7
