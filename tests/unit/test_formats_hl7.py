"""The HL7 v2 ADT reader (workers.formats.hl7): framing, message splitting over chunk boundaries, mapping,
rejections by MSH-10, no PHI; hypothesis: the hand-written message splitting never raises or loses a message."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtest.files import PHI_MARKERS, Adt, hl7_file
from workers.formats.common import REJECTED
from workers.formats.feed import FeedChunk
from workers.formats.hl7 import _timestamp, read_hl7, split_messages

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


# -- fields, one at a time (the mutation audit of issue 18) ----------------------------------------------------


def _message(msh: str = "20260105101500", *segments: str, control: str = "C1", event: str = "ADT^A08") -> bytes:
    head = f"MSH|^~\\&|ADT|HOSP|EHR|HOSP|{msh}||{event}|{control}|P|2.5"
    return "\r".join((head, *segments)).encode() + b"\r"


def _outcome(data: bytes, **limits: int) -> tuple[list[dict[str, object]], list[tuple[object, ...]]]:
    chunks = list(read_hl7("raw/ehr/hl7/f.hl7", iter([data]), **limits))
    rejected: list[tuple[object, ...]] = [(r["line_number"], r["reason"], r["record_id"], r["detail"])
                                          for c in chunks for r in c.rejected.to_pylist()]  # fmt: skip
    return [r for c in chunks for r in c.tables["adt_events"].to_pylist()], rejected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026", dt.datetime(2026, 1, 1)),
        ("202602", dt.datetime(2026, 2, 1)),
        ("20260203", dt.datetime(2026, 2, 3)),
        ("2026020304", dt.datetime(2026, 2, 3, 4)),
        ("202602030405", dt.datetime(2026, 2, 3, 4, 5)),
        ("20260203040506", dt.datetime(2026, 2, 3, 4, 5, 6)),
        ("20260203040506.25", dt.datetime(2026, 2, 3, 4, 5, 6, 250000)),
        ("20260203040506.1234", dt.datetime(2026, 2, 3, 4, 5, 6, 123400)),
        ("20260203040506.0157", dt.datetime(2026, 2, 3, 4, 5, 6, 15700)),  # was 15699: float rounding
        ("20260203040506.0001", dt.datetime(2026, 2, 3, 4, 5, 6, 100)),
        ("20260203040506.5+0100", dt.datetime(2026, 2, 3, 3, 5, 6, 500000)),
        ("20260203040506-0530", dt.datetime(2026, 2, 3, 9, 35, 6)),
        ("20260203+1145", dt.datetime(2026, 2, 2, 12, 15)),
        ("20260203-1200", dt.datetime(2026, 2, 3, 12)),
    ],
)
def test_hl7_date_times_are_utc(value: str, expected: dt.datetime) -> None:
    moment = _timestamp(value, "X-1")
    assert moment == expected.replace(tzinfo=dt.UTC)
    assert moment is not None
    assert moment.tzinfo is dt.UTC


def test_hl7_date_time_errors_name_the_field() -> None:
    assert _timestamp(None, "X-1") is None
    cases = [("2026-02-03", "not an HL7 date/time"), ("20260230", "not a calendar date/time"),
             ("202602031", "not an HL7 date/time"), ("2026020325", "not a calendar date/time")]  # fmt: skip
    for value, problem in cases:
        with pytest.raises(ValueError, match=f"^X-1: {problem}$"):
            _timestamp(value, "X-1")


def test_the_medical_record_number_is_the_patient_id() -> None:
    pid = "PID|1||{}||Zyxwvut^Qwertyuiop||19591231|F"
    visit = "PV1|1|I"
    cases = [
        ("S1^^^SSA^SS~P2^^^HOSP^MR~P3^^^HOSP^MR", "P2"),  # the first repetition that is an MR
        ("S1^^^SSA^SS~P2^^^HOSP^PI", "S1"),  # no MR: the first repetition
        ("^^^HOSP^MR~P2^^^HOSP^PI", "P2"),  # an MR without an id: the first id
        ("P1", "P1"),
    ]
    for ident, expected in cases:
        rows, rejected = _outcome(_message("2026", pid.format(ident), visit))
        assert ([r["patient_id"] for r in rows], rejected) == ([expected], []), ident
    for segments in ((pid.format(""), visit), (pid.format("^^^HOSP^MR"), visit), (visit,)):
        rows, rejected = _outcome(_message("2026", *segments))
        missing = (1, "invalid_message", "C1", "message C1: PID-3: patient identifier is missing")
        assert (rows, rejected) == ([], [missing])


def test_values_up_to_their_byte_limit_are_kept_and_longer_ones_reject_the_message() -> None:
    def one(control: str, patient: str, dx: str) -> tuple[list[dict[str, object]], list[tuple[object, ...]]]:
        return _outcome(_message("2026", f"PID|1||{patient}", f"DG1|1||{dx}", control=control))

    rows, rejected = one("C" * 64, "é" * 32, "D" * 16)  # 64 bytes: two per é
    assert ([(r["message_control_id"], r["patient_id"], r["primary_dx"]) for r in rows], rejected) == (
        [("C" * 64, "é" * 32, "D" * 16)],
        [],
    )
    _, rejected = one("C" * 65, "P1", "I10")
    assert rejected == [(1, "invalid_message", None, "message (no MSH-10): MSH-10: longer than 64 bytes")]
    _, rejected = one("C1", "é" * 32 + "x", "I10")
    assert rejected == [(1, "invalid_message", "C1", "message C1: PID-3: longer than 64 bytes")]
    _, rejected = one("C1", "P1", "D" * 17)
    assert rejected == [(1, "invalid_message", "C1", "message C1: DG1-3: longer than 16 bytes")]


def test_a_message_too_long_is_rejected_by_its_control_id_if_usable() -> None:
    body = "PID|1||P1\rNTE|1||" + "x" * 300
    for control, record_id in (("C1", "C1"), ("C" * 64, "C" * 64), ("C" * 65, None), ("", None)):
        _, rejected = _outcome(_message("2026", body, control=control), max_message_bytes=200)
        detail = f"message {record_id or '(no MSH-10)'}: message: longer than 200 bytes"
        assert rejected == [(1, "invalid_message", record_id, detail)], control
    # The MSH itself over the limit: no control id is read.
    _, rejected = _outcome(_message("2026", "PID|1||P1", control="C1" + " " * 300), max_message_bytes=200)
    assert rejected == [(1, "invalid_message", None, "message (no MSH-10): message: longer than 200 bytes")]


def _pv1(
    patient_class: str = "I", attending: str = "DR7", visit: str = "V1", admit: str = "", discharge: str = ""
) -> str:
    return "|".join(["PV1", "1", patient_class, "", "", "", "", attending, *[""] * 11, visit, *[""] * 24, admit,
                     discharge])  # fmt: skip


def test_the_event_is_msh_9_2_else_evn_1() -> None:
    cases = [("ADT^A08", "EVN|A05", "A08"), ("ADT", "EVN|A08", "A08"), ("ADT^", "EVN|A08", "A08"),
             ("ADT^A05", "EVN|A08", None), ("ADT", "", None)]  # fmt: skip
    for msh_9, evn, expected in cases:
        rows, rejected = _outcome(_message("2026", *filter(None, [evn, "PID|1||P1"]), event=msh_9))
        assert [r["event"] for r in rows] == ([expected] if expected else []), msh_9
        assert [r[1] for r in rejected] == ([] if expected else ["unsupported_event"]), msh_9


def test_encounter_events_need_a_visit_number_and_a40_a_merged_patient() -> None:
    for event in ("A01", "A02", "A03", "A04", "A11", "A13", "A08", "A40"):
        segments = ["PID|1||P1", _pv1(visit="")] + (["MRG|P0"] if event == "A40" else [])
        rows, rejected = _outcome(_message("2026", *segments, event=f"ADT^{event}"))
        if event in ("A08", "A40"):
            assert ([(r["event"], r["encounter_id"]) for r in rows], rejected) == ([(event, None)], []), event
        else:
            assert rejected == [(1, "invalid_message", "C1", "message C1: PV1-19: visit number is missing")], event
    rows, _ = _outcome(_message("2026", "PID|1||P1", "MRG|P0^^^HOSP^MR~P9", _pv1(), event="ADT^A01"))
    assert [(r["prior_patient_id"], r["encounter_id"]) for r in rows] == [("P0", "V1")]  # MRG-1.1, PV1-19.1


def test_classes_sexes_dates_and_the_attending() -> None:
    classes = {"I": "inpatient", "O": "outpatient", "E": "emergency", "P": "preadmit", "R": "recurring",
               "B": "obstetrics", "X": "X", "": None}  # fmt: skip
    sexes = {"F": "female", "M": "male", "O": "other", "U": "unknown", "A": "ambiguous", "N": "not applicable",
             "Z": "Z", "": None}  # fmt: skip
    for (code, patient_class), (letter, sex) in zip(classes.items(), sexes.items(), strict=True):
        pid = f"PID|1||P1||Zyxwvut||19591231235959|{letter}|||a^b^c^d^02139"
        visit = _pv1(code, attending="DR7^Zyxwvut~DR8", admit="20260105101500", discharge="20260106+0100")
        [row], _ = _outcome(_message("2026", pid, visit))
        assert (row["encounter_type"], row["sex"]) == (patient_class, sex)
        assert (row["provider_id"], row["birth_date"], row["postal_code"]) == ("DR7", dt.date(1959, 12, 31), "021")
        assert row["admit_at"] == dt.datetime(2026, 1, 5, 10, 15, tzinfo=dt.UTC)
        assert row["discharge_at"] == dt.datetime(2026, 1, 5, 23, tzinfo=dt.UTC)
    [row], _ = _outcome(_message("2026", "PID|1||P1||x||1959", _pv1("")))
    assert (row["birth_date"], row["encounter_type"], row["admit_at"]) == (dt.date(1959, 1, 1), None, None)


@pytest.mark.parametrize(
    ("segments", "detail"),
    [
        (("PID|1||P1", _pv1(visit="V" * 65)), "PV1-19: longer than 64 bytes"),
        (("PID|1||P1", "MRG|" + "P" * 65), "MRG-1: longer than 64 bytes"),
        (("PID|1||P1", _pv1("I" * 65)), "PV1-2: longer than 64 bytes"),
        (("PID|1||P1", _pv1(attending="D" * 65)), "PV1-7: longer than 64 bytes"),
        (("PID|1||P1", _pv1(admit="2026-01-05")), "PV1-44: not an HL7 date/time"),
        (("PID|1||P1", _pv1(discharge="20261305")), "PV1-45: not a calendar date/time"),
        (("PID|1||P1||x||19591331",), "PID-7: not a calendar date/time"),
        (("PID|1||P1||x||1959123",), "PID-7: not an HL7 date/time"),
        (("PID|1||P1||x||19591231|" + "F" * 17,), "PID-8: longer than 16 bytes"),
        (("PID|1||P1",), "MSH-7: not an HL7 date/time"),
    ],
)
def test_each_field_names_itself_when_it_rejects_the_message(segments: tuple[str, ...], detail: str) -> None:
    msh_7 = "x" if detail.startswith("MSH-7") else "2026"
    _, rejected = _outcome(_message(msh_7, *segments))
    assert rejected == [(1, "invalid_message", "C1", f"message C1: {detail}")]


def test_a_message_without_msh_7_is_rejected() -> None:
    _, rejected = _outcome(_message("", "PID|1||P1"))
    assert rejected == [(1, "invalid_message", "C1", "message C1: MSH-7: message date/time is missing")]


# -- message splitting ----------------------------------------------------------------------------------------


def _split_all(data: bytes, size: int = 1 << 20, limit: int = 1 << 20) -> list[tuple[int, bytes, bool]]:
    return list(split_messages(iter([data[i : i + size] for i in range(0, len(data), size)]), limit=limit))


def test_segments_and_framing() -> None:
    data = b"\x0b\r\n \rPID|0\rMSH|a\r\rPID|b\n\nFHS|c\rBHS|d\rMSH|e\r\nPV1|f\r\n\x1c\rBTS|g\rFTS|h\rPID|i\rMSH|j\r"
    expected = [(4, b"MSH|a\rPID|b", True), (10, b"MSH|e\rPV1|f", True), (16, b"MSH|j", True)]
    for size in (1, 2, 3, 5, 1 << 20):
        assert _split_all(data, size) == expected, size
    assert _split_all(b"MSH|a\x1c\x0bMSH|b\r\n") == [(1, b"MSH|aMSH|b", True)]  # framing bytes are only dropped
    assert _split_all(b"MSH|a\rMSH|b") == [(1, b"MSH|a", True), (2, b"MSH|b", True)]
    assert _split_all(b"FHS|a\rPID|b\r") == []


def test_a_message_of_exactly_the_limit_is_complete_and_one_byte_more_keeps_only_its_msh() -> None:
    data = b"MSH|1\rPID|2\r\rPV1|3\rMSH|4\r"  # the first message: 17 bytes (blank lines are not part of it)
    for size in (1, 2, 3, 1 << 20):
        assert _split_all(data, size, 17) == [(1, b"MSH|1\rPID|2\rPV1|3", True), (5, b"MSH|4", True)], size
        assert _split_all(data, size, 16) == [(1, b"MSH|1", False), (5, b"MSH|4", True)], size
        assert _split_all(data, size, 5) == [(1, b"MSH|1", False), (5, b"MSH|4", True)], size
        assert _split_all(data, size, 4) == [(1, b"", False), (5, b"", False)], size


def test_limits_hold_whatever_the_chunk_boundaries() -> None:
    # Each of these was read differently by chunk size before issue 18's audit: a wrapper segment over the limit
    # came out as a message, and a segment of exactly the limit ending at a chunk's CR (or at the end of the file)
    # was taken as over the limit.
    assert _split_all(b"MSH|1\rFHS|123456789\rMSH|2\r", limit=8) == [(1, b"MSH|1", True), (3, b"MSH|2", True)]
    assert _split_all(b"MSH|1\rFHS|123456789\rMSH|2\r", 3, 8) == [(1, b"MSH|1", True), (3, b"MSH|2", True)]
    assert _split_all(b"MSH|1234\r", limit=8) == [(1, b"MSH|1234", True)]
    assert _split_all(b"MSH|1234\r\nMSH|2\r\n", 9, 8) == [(1, b"MSH|1234", True), (2, b"MSH|2", True)]
    assert _split_all(b"MSH|1234\r\nPID|2\r\n", 9, 8) == [(1, b"MSH|1234", False)]
    rows, rejected = _outcome(b"FHS|" + b"x" * 300 + b"\r" + _message("2026", "PID|1||P1"), max_message_bytes=200)
    assert ([r["message_control_id"] for r in rows], rejected) == (["C1"], [])  # was also a rejection with no MSH-10


def test_a_segment_without_an_end_is_dropped_as_it_streams() -> None:
    def stream(*parts: bytes) -> list[tuple[int, bytes, bool]]:
        return list(split_messages(iter(parts), limit=10))

    assert stream(b"MSH|1\rPID|", b"x" * 20, b"x" * 20, b"\rPV1|1\rMSH|2\r") == [
        (1, b"MSH|1", False),
        (4, b"MSH|2", True),
    ]
    assert stream(b"MSH|1\rMSH|", b"x" * 20, b"x" * 20, b"\rPV1|1\rMSH|2\r") == [
        (1, b"MSH|1", True), (2, b"", False), (4, b"MSH|2", True)
    ]  # fmt: skip
    assert stream(b"MSH|1\rFHS|", b"x" * 20, b"\rPID|1\rMSH|2\r") == [(1, b"MSH|1", True), (4, b"MSH|2", True)]
    assert stream(b"PID|", b"x" * 20, b"\rMSH|2\r") == [(2, b"MSH|2", True)]
    assert stream(b"MSH|", b"x" * 20, b"\rMSH|2\r") == [(1, b"", False), (2, b"MSH|2", True)]


_PIECES = [b"MSH|1", b"MSH|123456789", b"PID|1", b"PID|12345678901", b"FHS|1", b"BTS|1234567890123", b"PV1|x", b" "]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(_PIECES), st.sampled_from([b"\r", b"\n", b"\r\n", b"", b"\x0b", b"\x1c"])),
             max_size=8),
    st.integers(3, 20),
    st.integers(1, 7),
)  # fmt: skip
def test_chunk_boundaries_never_change_the_messages(pieces: list[tuple[bytes, bytes]], limit: int, size: int) -> None:
    data = b"".join(a + b for a, b in pieces)
    assert _split_all(data, size, limit) == _split_all(data, limit=limit)


def test_a_file_is_unreadable_only_with_content_and_no_message() -> None:
    def whole(*chunks: bytes) -> list[tuple[bool, list[str]]]:
        return [(c.whole_file, [r["reason"] for r in c.rejected.to_pylist()])
                for c in read_hl7("raw/ehr/hl7/f.hl7", iter(chunks))]  # fmt: skip

    assert whole(b"x") == [(True, ["unreadable"])]
    assert whole(b"PID|1", b" \r\n") == [(True, ["unreadable"])]
    assert whole(b" \r\n", b"\x0b\x1c") == []
    assert whole() == []
    two = _message("2026", "PID|1||P1") + _message("2026", "PID|1||P2", control="C2")
    for max_rows in (1, 2):  # the last chunk ends with the last message: nothing more
        chunks = list(read_hl7("raw/ehr/hl7/f.hl7", iter([two]), max_rows=max_rows))
        assert [(c.whole_file, c.tables["adt_events"].num_rows) for c in chunks] == [(False, max_rows)] * (
            2 // max_rows
        )


def test_chunks_are_typed_and_bytes_that_are_not_utf8_are_replaced() -> None:
    data = _message("2026", "PID|1||P#1", "PV1|1|#").replace(b"#", b"\xff") + _message("x", "PID|1||P2")
    [chunk] = list(read_hl7("raw/ehr/hl7/f.hl7", iter([data])))
    assert chunk.rejected.schema == REJECTED
    assert [(r["patient_id"], r["encounter_type"]) for r in chunk.tables["adt_events"].to_pylist()] == [
        ("P\ufffd1", "\ufffd")
    ]
    [clean] = list(read_hl7("raw/ehr/hl7/f.hl7", iter([_message("2026", "PID|1||P1")])))
    assert (clean.rejected.schema, clean.rejected.num_rows) == (REJECTED, 0)


def test_a_message_python_hl7_cannot_parse_is_rejected_alone() -> None:
    data = b"MSH\rPID|1\r" + _message("2026", "PID|1||P1") + b"MSH|\r"
    rows, rejected = _outcome(data)
    detail = "message (no MSH-10): not parseable as HL7 v2"
    assert [r["message_control_id"] for r in rows] == ["C1"]
    assert rejected == [(1, "invalid_message", None, detail), (5, "invalid_message", None, detail)]


def test_a_long_segment_streaming_in_keeps_the_messages_around_it() -> None:
    def stream(*parts: bytes) -> list[tuple[int, bytes, bool]]:
        return list(split_messages(iter(parts), limit=12))

    # The message before a long MSH ends whole; a long segment inside a message keeps only its MSH.
    assert stream(b"MSH|1\rPID|1\rMSH|", b"x" * 20, b"\rMSH|2\r") == [
        (1, b"MSH|1\rPID|1", True), (3, b"", False), (4, b"MSH|2", True)
    ]  # fmt: skip
    assert stream(b"MSH|1\rPID|1\rNTE|", b"x" * 20, b"\rMSH|2\r") == [(1, b"MSH|1", False), (4, b"MSH|2", True)]
    assert _split_all(b"MSH", limit=3) == [(1, b"MSH", True)]  # the end of the file is no segment


def test_an_unreadable_file_is_one_typed_rejection_and_no_table() -> None:
    [chunk] = list(read_hl7("raw/ehr/hl7/f.hl7", iter([b"not hl7"])))
    assert (dict(chunk.tables), chunk.whole_file, chunk.rejected.schema) == ({}, True, REJECTED)
    assert chunk.rejected.to_pylist() == [
        {"line_number": None, "reason": "unreadable", "detail": "file: not HL7 v2 (no MSH segment)", "record_id": None}
    ]


def test_a_parser_failure_after_msh_10_still_names_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    # python-hl7 has asserted on damaged segments (the fuzz test): a failure while the fields are mapped is
    # injected here, as no known message produces one after MSH-10 was read.
    def fail(message: object) -> str:
        raise AssertionError

    monkeypatch.setattr("workers.formats.hl7._patient_id", fail)
    _, rejected = _outcome(_message("2026", "PID|1||P1"))
    assert rejected == [(1, "invalid_message", "C1", "message C1: not parseable as HL7 v2")]
