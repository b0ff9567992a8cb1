"""The X12 mapping rule by rule (workers.formats.x12 / x12_transactions): each value read, each fallback and each
bound, on hand-written segments, so that a change to any rule fails a test (the mutation audit of issue 18)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from pyx12.segment import Segment

from loadtest.files import Adjudication, Claim, x12_835, x12_837
from workers.formats.feed import FeedChunk
from workers.formats.x12 import read_x12
from workers.formats.feed import rejection
from workers.formats.x12_transactions import Interchange, Transaction, _BadClaim, _date, _money, _ref, _text, getter

SUPERSCRIPT_TWO = "\u00b2"  # Latin-1 0xB2: str.isdigit() is true, int() refuses it


def _read(data: bytes, max_rows: int = 10_000) -> list[FeedChunk]:
    return list(read_x12("raw/claims/x12/f.x12", iter([data]), max_rows=max_rows))


def _rows(chunks: list[FeedChunk], table: str) -> list[dict[str, object]]:
    return [r for c in chunks if table in c.tables for r in c.tables[table].to_pylist()]


def _rejected(chunks: list[FeedChunk]) -> list[dict[str, object]]:
    return [r for c in chunks for r in c.rejected.to_pylist()]


def _transaction(kind: str, segments: list[str], control: str = "000000001") -> Interchange:
    """``segments`` (``*`` elements, ``:`` components) fed to one :class:`Transaction` at positions 1.., then SE."""
    transaction, out = Transaction(kind, "00000000"), Interchange(control)
    for position, text in enumerate(segments, start=1):
        transaction.segment(Segment(text, "~", "*", ":"), position)
    transaction.rows(out, control)
    return out


def test_superscript_digits_are_not_numbers() -> None:
    """A Latin-1 superscript in a line's diagnosis pointer or REF*6R line number fell through ``isdigit`` into
    ``int`` and raised out of the reader (the whole file failed); it is now an unusable number like any other
    non-digit: the first diagnosis, the SVC's position."""
    data = x12_837([Claim("A1")]).replace(b"*UN*1***1~", f"*UN*1***{SUPERSCRIPT_TWO}~".encode("latin-1"))
    assert SUPERSCRIPT_TWO.encode("latin-1") in data
    [row] = _rows(_read(data), "claims")
    assert (row["claim_id"], row["dx_code"]) == ("A1", "I10")
    remit = x12_835([Adjudication("A1", "1", ((7, "150", "100", "120", None),))])
    remit = remit.replace(b"REF*6R*7~", f"REF*6R*{SUPERSCRIPT_TWO}~".encode("latin-1"))
    [line] = _rows(_read(remit), "remittances")
    assert (line["claim_id"], line["line_number"], line["status"]) == ("A1", 1, "paid")
    # The same for a line number and a claim status fed straight to the transaction (pyx12 checks LX01 itself).
    out = _transaction("837P", ["NM1*IL*1*X*****MI*M1", "CLM*C1*10", "HI*ABK:I10", "LX*" + SUPERSCRIPT_TWO,
                                "SV1*HC:1*10*UN*1", "DTP*472*D8*20260105"])  # fmt: skip
    assert [r["detail"] for r in out.rejected] == ["837P claim: LX01 at segment 4: not a positive integer"]
    out = _transaction("835", ["CLP*C1*" + SUPERSCRIPT_TWO + "*10*10"])
    assert [r["detail"] for r in out.rejected] == ["835 claim: CLP02: not a claim status code"]


# -- element references and values ---------------------------------------------------------------------------


def test_element_references() -> None:
    assert _ref("SV101-2") == (0, 1)
    assert _ref("HI12") == (11, 0)
    assert _ref("BPR16") == (15, 0)
    assert _ref("N302-10") == (1, 9)
    for bad in ("sv101-2", "SV1", "SV101-", "SV101-2-1", "XXSV101XX"):
        with pytest.raises(ValueError, match=f"^not an X12 reference designator: '{bad}'$"):
            _ref(bad)
    get = getter(Segment("SV1*HC:99213*150*UN*1***2", "~", "*", ":"))
    assert [get("SV101-1"), get("SV101-2"), get("SV101"), get("SV102"), get("SV107-1")] == ["HC", "99213", "HC",
                                                                                          "150", "2"]  # fmt: skip
    assert get("SV101-3") is None  # one component past the last
    assert get("SV108") is None  # one element past the last


def test_money() -> None:
    assert _money(None, "E") is None
    assert _money("", "E") is None
    assert str(_money("5", "E")) == "5.00"
    assert str(_money("-12.3", "E")) == "-12.30"
    assert _money("9999999999.99", "E") == Decimal("9999999999.99")
    assert _money("-9999999999.99", "E") == Decimal("-9999999999.99")
    for value, message in {
        None: "E: required amount is missing",
        "": "E: required amount is missing",
        "1,5": "E: not a decimal amount",
        "1.234": "E: not an amount with up to 10 digits and 2 decimals",
        "10000000000.00": "E: not an amount with up to 10 digits and 2 decimals",
        "-10000000000": "E: not an amount with up to 10 digits and 2 decimals",
        "NaN": "E: not an amount with up to 10 digits and 2 decimals",
        "Infinity": "E: not an amount with up to 10 digits and 2 decimals",
    }.items():
        with pytest.raises(_BadClaim) as caught:
            _money(value, "E", required=True)
        assert str(caught.value) == message, value


def test_dates() -> None:
    assert _date(None, "E") is None
    assert _date("", "E") is None
    assert _date("20261231", "E") == date(2026, 12, 31)
    assert _date("20260105-20261231", "E") == date(2026, 1, 5)  # RD8: the first date
    assert _date("20261115-20261116-20261117", "E") == date(2026, 11, 15)
    for value, message in {
        "2026123": "E: not a CCYYMMDD date",
        "-20261231": "E: not a CCYYMMDD date",
        "2026-12-31": "E: not a CCYYMMDD date",
        "20261301": "E: not a calendar date",
        "20260230": "E: not a calendar date",
    }.items():
        with pytest.raises(_BadClaim) as caught:
            _date(value, "E")
        assert str(caught.value) == message, value


def test_text() -> None:
    assert _text(None, "E", 4) is None
    assert _text("", "E", 4) is None
    assert _text("abcd", "E", 4) == "abcd"
    assert _text("\u00e9\u00e9", "E", 4) == "\u00e9\u00e9"  # bytes, not characters: 2 x 2
    for value, required, message in (
        (None, True, "E: required value is missing"),
        ("", True, "E: required value is missing"),
        ("abcde", False, "E: longer than 4 bytes"),
        ("\u00e9\u00e9a", False, "E: longer than 4 bytes"),
    ):
        with pytest.raises(_BadClaim) as caught:
            _text(value, "E", 4, required=required)
        assert str(caught.value) == message, value


# -- 837 ------------------------------------------------------------------------------------------------------

BILLING = ["HL*1**20*1", "NM1*85*2*CLINIC*****XX*1992753880", "HL*2*1*22*0", "NM1*IL*1*DOE*****MI*SUB1"]
CLAIM = ["CLM*C1*190", "HI*ABK:I10*ABF:E119", "NM1*82*1*DOC*****XX*1234567893",
         "LX*1", "SV1*HC:99213*150*UN*1***1", "DTP*472*D8*20261231",
         "LX*2", "SV1*HC:85025*40*UN*1***2", "DTP*472*RD8*20260105-20260110"]  # fmt: skip


def _line(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "claim_id": "C1", "line_number": 1, "patient_id": "SUB1", "provider_npi": "1234567893",
        "service_date": date(2026, 12, 31), "procedure_code": "99213", "dx_code": "I10",
        "billed_amount": Decimal("150.00"), "allowed_amount": None, "paid_amount": None, "status": "pending",
        "denial_reason": None, "source_line": 8,
    }  # fmt: skip
    return row | changes


def _claim_rows(segments: list[str], kind: str = "837P") -> list[dict[str, object]]:
    out = _transaction(kind, segments)
    assert out.rejected == []
    return out.claims


def _claim_rejections(segments: list[str], kind: str = "837P") -> list[tuple[object, ...]]:
    out = _transaction(kind, segments)
    assert out.claims == []
    return [(r["line_number"], r["reason"], r["detail"], r["record_id"]) for r in out.rejected]


def test_837_lines() -> None:
    assert _claim_rows(BILLING + CLAIM) == [
        _line(),
        _line(line_number=2, service_date=date(2026, 1, 5), procedure_code="85025", dx_code="E119",
              billed_amount=Decimal("40.00"), source_line=11),
    ]  # fmt: skip


def test_837_billing_provider_and_subscriber_are_per_hl() -> None:
    no_rendering = [s for s in CLAIM if not s.startswith("NM1*82")]
    rows = _claim_rows(BILLING + no_rendering + ["HL*3**20*1", "HL*4*3*22*0", "NM1*IL*1*DOE*****MI*SUB2"]
                       + [s.replace("C1", "C2") for s in no_rendering])  # fmt: skip
    assert [(r["claim_id"], r["patient_id"], r["provider_npi"]) for r in rows] == [
        ("C1", "SUB1", "1992753880"), ("C1", "SUB1", "1992753880"), ("C2", "SUB2", None), ("C2", "SUB2", None),
    ]  # fmt: skip
    # A new subscriber (HL 22) or billing provider (HL 20) without its own NM1*IL has no member id.
    for hl in ("HL*3*1*22*0", "HL*3**20*1"):
        assert _claim_rejections(BILLING + [hl] + CLAIM)[0][2] == (
            "837P claim: NM109 member id: required value is missing"
        )
    # A dependant (HL 23) keeps the subscriber and its billing provider.
    assert _claim_rows(BILLING + ["HL*3*2*23*0"] + CLAIM)[0]["patient_id"] == "SUB1"


def test_837_patient_loop_member_id() -> None:
    patient = ["HL*3*2*23*0", "NM1*QC*1*DOE*****MI*DEP1"]
    assert _claim_rows(BILLING + patient + CLAIM)[0]["patient_id"] == "DEP1"
    # Only under HL 23, and reset by every HL.
    assert _claim_rows(BILLING + ["NM1*QC*1*DOE*****MI*DEP1"] + CLAIM)[0]["patient_id"] == "SUB1"
    assert _claim_rows(BILLING + patient + ["HL*4*2*23*0"] + CLAIM)[0]["patient_id"] == "SUB1"
    # An empty NM109 in the patient loop: the subscriber's.
    assert _claim_rows(BILLING + ["HL*3*2*23*0", "NM1*QC*1*DOE*****MI"] + CLAIM)[0]["patient_id"] == "SUB1"


def test_837_which_nm1_counts() -> None:
    # NM1*85 with another id qualifier (24: EIN) is not the NPI; NM1*IL/QC/85 after CLM do not change the claim.
    head = ["HL*1**20*1", "NM1*85*2*CLINIC*****24*123456789", "HL*2*1*22*0", "NM1*IL*1*DOE*****MI*SUB1"]
    no_rendering = [s for s in CLAIM if not s.startswith("NM1*82")]
    assert _claim_rows(head + no_rendering)[0]["provider_npi"] is None
    late = ["NM1*IL*1*X*****MI*SUB9", "NM1*QC*1*X*****MI*DEP9", "NM1*85*2*X*****XX*1111111111"]
    rows = _claim_rows(BILLING + CLAIM[:1] + late + no_rendering[1:])
    assert {(r["patient_id"], r["provider_npi"]) for r in rows} == {("SUB1", "1992753880")}
    # NM1*82 is the rendering provider only with an NPI (XX) and only at claim level (not in a line).
    for rendering in ("NM1*82*1*DOC*****24*1234567893", "NM1*DN*1*DOC*****XX*1234567893"):
        assert _claim_rows(BILLING + [rendering if s.startswith("NM1*82") else s for s in CLAIM])[0][
            "provider_npi"] == "1992753880"  # fmt: skip
    in_line = no_rendering[:3] + ["NM1*82*1*DOC*****XX*1234567893"] + no_rendering[3:]
    assert _claim_rows(BILLING + in_line)[0]["provider_npi"] == "1992753880"
    # A bad NPI rejects the claim.
    bad = [s.replace("1234567893", "123456789") for s in CLAIM]
    assert _claim_rejections(BILLING + bad) == [(5, "invalid_claim", "837P claim: NM109 NPI: not 10 digits", "C1")]


def test_837_diagnoses() -> None:
    codes = "*".join(f"ABF:D{i:02d}" for i in range(1, 14))  # 13 codes: only 12 are read
    lines = ["LX*1", "SV1*HC:1*1*UN*1***12", "DTP*472*D8*20261231", "LX*2", "SV1*HC:1*1*UN*1***13",
             "DTP*472*D8*20261231", "LX*3", "SV1*HC:1*1*UN*1***0", "DTP*472*D8*20261231", "LX*4", "SV1*HC:1*1*UN*1",
             "DTP*472*D8*20261231"]  # fmt: skip
    rows = _claim_rows(BILLING + ["CLM*C1*4", "HI*" + codes, "HI*ABK:X99"] + lines)
    assert [r["dx_code"] for r in rows] == ["D12", "D01", "D01", "D01"]  # pointers 12, 13 (past), 0, none
    # Reading stops at the first empty code; a claim without HI has no diagnosis.
    rows = _claim_rows(BILLING + ["CLM*C1*4", "HI*ABK:D01**ABF:D03"] + lines[:3])
    assert [r["dx_code"] for r in rows] == ["D01"]
    rows = _claim_rows(BILLING + ["CLM*C1*4", "HI*ABK:D01*ABF:D02"] + lines[:3])
    assert [r["dx_code"] for r in rows] == ["D01"]  # pointer 12 of 2 codes
    assert _claim_rows(BILLING + ["CLM*C1*4"] + lines[:3])[0]["dx_code"] is None
    long_code = "HI*ABK:" + "X" * 17
    assert _claim_rejections(BILLING + ["CLM*C1*4", long_code] + lines[:3])[0][2] == (
        "837P claim: HI diagnosis code: longer than 16 bytes"
    )


def test_837_service_dates() -> None:
    def dates(segments: list[str]) -> list[object]:
        return [r["service_date"] for r in _claim_rows(BILLING + ["CLM*C1*2"] + segments)]

    line = ["LX*1", "SV1*HC:1*1*UN*1"]
    # The claim's DTP*472, else DTP*434 (RD8: its first date); a line's own DTP*472 first.
    assert dates(["DTP*434*RD8*20261101-20261130"] + line) == [date(2026, 11, 1)]
    assert dates(["DTP*434*D8*20261101", "DTP*472*D8*20261102"] + line) == [date(2026, 11, 2)]
    assert dates(["DTP*472*D8*20261102", "DTP*434*D8*20261101"] + line) == [date(2026, 11, 2)]
    assert dates(["DTP*472*D8*20261102"] + line + ["DTP*472*D8*20261103"] + line) == [date(2026, 11, 3),
                                                                                       date(2026, 11, 2)]  # fmt: skip
    assert dates(["DTP*472*D8*20261102"] + line + ["DTP*096*D8*20261103"]) == [date(2026, 11, 2)]
    assert dates(["DTP*096*D8*20261103", "DTP*472*D8*20261102"] + line) == [date(2026, 11, 2)]
    assert _claim_rejections(BILLING + ["CLM*C1*2", "DTP*096*D8*20261103"] + line) == [
        (5, "invalid_claim", "837P claim: DTP*472 at line 1: service date is missing", "C1")
    ]
    assert _claim_rejections(BILLING + ["CLM*C1*2", "DTP*472*D8*2026110"] + line)[0][2] == (
        "837P claim: DTP*472 service date: not a CCYYMMDD date"
    )


def test_837_lines_and_their_values() -> None:
    head = BILLING + ["CLM*C1*2", "DTP*472*D8*20261102"]
    # SV1 / SV2 before any LX are not lines; SV2: SV202-2, else the revenue code SV201; SV203 the charge.
    assert _claim_rejections(head + ["SV1*HC:1*1"]) == [(5, "invalid_claim", "837P claim: 2400: no service line",
                                                         "C1")]  # fmt: skip
    rows = _claim_rows(head + ["LX*1", "SV2*0450*HC:99285*77.5*UN*1", "LX*2", "SV2*0300**8*UN*1"], "837I")
    assert [(r["line_number"], r["procedure_code"], r["billed_amount"]) for r in rows] == [
        (1, "99285", Decimal("77.50")), (2, "0300", Decimal("8.00"))
    ]  # fmt: skip
    assert _claim_rejections(head + ["LX*1", "SV2*0450*HC:99285"], "837I")[0][2] == (
        "837I claim: line charge: required amount is missing"
    )
    assert _claim_rejections(head + ["LX*1", "SV1*HC:1"])[0][2] == "837P claim: line charge: required amount is missing"
    assert _claim_rejections(head + ["LX*1", "SV1*HC:" + "P" * 17 + "*1"])[0][2] == (
        "837P claim: procedure code: longer than 16 bytes"
    )
    # LX01 from 1 to 999,999,999.
    assert [r["line_number"] for r in _claim_rows(head + ["LX*999999999", "SV1*HC:1*1"])] == [999_999_999]
    for number in ("0", "1000000000", "-1", "1.0", ""):
        assert _claim_rejections(head + ["LX*" + number, "SV1*HC:1*1"])[0][2] == (
            "837P claim: LX01 at segment 7: not a positive integer"
        ), number
    # A transaction set of an unsupported kind reads nothing.
    assert _transaction("", head + ["LX*1", "SV1*HC:1*1"]) == Interchange("000000001")


def test_837_claim_and_member_ids() -> None:
    claim = CLAIM[1:]
    assert _claim_rows(BILLING + ["CLM*" + "K" * 64] + claim)[0]["claim_id"] == "K" * 64
    assert _claim_rejections(BILLING + ["CLM*" + "K" * 65] + claim) == [
        (5, "invalid_claim", "837P claim: CLM01: longer than 64 bytes", "K" * 64)  # the record id is cut to 64
    ]
    assert _claim_rejections(BILLING + ["CLM"] + claim) == [
        (5, "invalid_claim", "837P claim: CLM01: required value is missing", None)
    ]
    assert _claim_rejections(BILLING + ["CLM*"] + claim)[0][3] is None
    member = [s.replace("SUB1", "M" * 65) for s in BILLING]
    assert _claim_rejections(member + CLAIM)[0][2] == "837P claim: NM109 member id: longer than 64 bytes"
    assert _claim_rows([s.replace("SUB1", "M" * 64) for s in BILLING] + CLAIM)[0]["patient_id"] == "M" * 64


def test_837_errors_reject_their_claims() -> None:
    transaction, out = Transaction("837P", "00000000"), Interchange("1")
    for position, text in enumerate(BILLING + CLAIM + ["CLM*C2*1"] + CLAIM[1:], start=1):
        transaction.segment(Segment(text, "~", "*", ":"), position)
        if text == "LX*2" and transaction.claim is not None and transaction.claim.claim_id == "C1":
            transaction.claim.error = "segment 11: pyx12 segment error LX"
    transaction.rows(out, "1")
    assert [r["claim_id"] for r in out.claims] == ["C2", "C2"]
    assert out.rejected == [rejection(5, "invalid_claim", "837P claim: segment 11: pyx12 segment error LX", "C1")]
    # An error of the transaction set rejects every claim with the first of its errors.
    transaction, out = Transaction("837P", "00000000"), Interchange("1")
    for position, text in enumerate(BILLING + CLAIM + ["CLM*C2*1"] + CLAIM[1:], start=1):
        transaction.segment(Segment(text, "~", "*", ":"), position)
    transaction.errors += ["first", "second"]
    transaction.rows(out, "1")
    assert out.claims == []
    assert out.rejected == [rejection(5, "invalid_claim", "837P claim: first", "C1"),
                            rejection(14, "invalid_claim", "837P claim: first", "C2")]  # fmt: skip


def test_837_release_and_pending() -> None:
    transaction, out = Transaction("837P", "00000000"), Interchange("1")
    assert (transaction.pending, transaction.released) == (0, False)
    for position, text in enumerate(BILLING + CLAIM + ["CLM*C2*1"], start=1):
        transaction.segment(Segment(text, "~", "*", ":"), position)
    assert transaction.pending == 2  # C1's two lines; C2 is open
    assert out.held(transaction) == 2
    transaction.release(out, "1")
    assert (transaction.pending, transaction.released, len(out.claims)) == (0, True, 2)
    assert out.held(transaction) == 2 and out.held(None) == 2
    transaction.close_claim()
    assert transaction.pending == 1  # a claim without lines still gives one row (its rejection)
    out.rejected.append(rejection(1, "r", "d"))
    assert out.held(transaction) == 4
