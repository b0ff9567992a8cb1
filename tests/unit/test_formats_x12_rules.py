"""The X12 mapping rule by rule (workers.formats.x12 / x12_transactions): each value read, each fallback and each
bound, on hand-written segments, so that a change to any rule fails a test (the mutation audit of issue 18)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest
from pyx12.segment import Segment

from loadtest.files import Adjudication, Claim, ClaimLine, Separators, x12_835, x12_837, x12_interchange
from schemas.arrow import CLAIMS
from schemas.feeds import REMITTANCES
from workers.formats.common import REJECTED, with_source_line
from workers.formats.feed import FeedChunk, rejection
from workers.formats.x12 import _transaction_kind, read_x12
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
        assert _claim_rejections([*BILLING, hl, *CLAIM])[0][2] == (
            "837P claim: NM109 member id: required value is missing"
        )
    # A dependant (HL 23) keeps the subscriber and its billing provider.
    assert _claim_rows([*BILLING, "HL*3*2*23*0", *CLAIM])[0]["patient_id"] == "SUB1"


def test_837_patient_loop_member_id() -> None:
    patient = ["HL*3*2*23*0", "NM1*QC*1*DOE*****MI*DEP1"]
    assert _claim_rows(BILLING + patient + CLAIM)[0]["patient_id"] == "DEP1"
    # Only under HL 23, and reset by every HL.
    assert _claim_rows([*BILLING, "NM1*QC*1*DOE*****MI*DEP1", *CLAIM])[0]["patient_id"] == "SUB1"
    assert _claim_rows(BILLING + patient + ["HL*4*2*23*0"] + CLAIM)[0]["patient_id"] == "SUB1"
    # An empty NM109 in the patient loop: the subscriber's.
    assert _claim_rows([*BILLING, "HL*3*2*23*0", "NM1*QC*1*DOE*****MI", *CLAIM])[0]["patient_id"] == "SUB1"


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
    in_line = [*no_rendering[:3], "NM1*82*1*DOC*****XX*1234567893", *no_rendering[3:]]
    assert _claim_rows(BILLING + in_line)[0]["provider_npi"] == "1992753880"
    # A bad NPI rejects the claim.
    bad = [s.replace("1234567893", "123456789") for s in CLAIM]
    assert _claim_rejections(BILLING + bad) == [(5, "invalid_claim", "837P claim: NM109 NPI: not 10 digits", "C1")]


def test_837_diagnoses() -> None:
    codes = "*".join(f"ABF:D{i:02d}" for i in range(1, 14))  # 13 codes: only 12 are read
    lines = ["LX*1", "SV1*HC:1*1*UN*1***12", "DTP*472*D8*20261231", "LX*2", "SV1*HC:1*1*UN*1***13",
             "DTP*472*D8*20261231", "LX*3", "SV1*HC:1*1*UN*1***0", "DTP*472*D8*20261231", "LX*4", "SV1*HC:1*1*UN*1",
             "DTP*472*D8*20261231"]  # fmt: skip
    rows = _claim_rows([*BILLING, "CLM*C1*4", "HI*" + codes, "HI*ABK:X99", *lines])
    assert [r["dx_code"] for r in rows] == ["D12", "D01", "D01", "D01"]  # pointers 12, 13 (past), 0, none
    # Reading stops at the first empty code; a claim without HI has no diagnosis.
    rows = _claim_rows([*BILLING, "CLM*C1*4", "HI*ABK:D01**ABF:D03", *lines[:3]])
    assert [r["dx_code"] for r in rows] == ["D01"]
    rows = _claim_rows([*BILLING, "CLM*C1*4", "HI*ABK:D01*ABF:D02", *lines[:3]])
    assert [r["dx_code"] for r in rows] == ["D01"]  # pointer 12 of 2 codes
    assert _claim_rows([*BILLING, "CLM*C1*4", *lines[:3]])[0]["dx_code"] is None
    long_code = "HI*ABK:" + "X" * 17
    assert _claim_rejections([*BILLING, "CLM*C1*4", long_code, *lines[:3]])[0][2] == (
        "837P claim: HI diagnosis code: longer than 16 bytes"
    )


def test_837_service_dates() -> None:
    def dates(segments: list[str]) -> list[object]:
        return [r["service_date"] for r in _claim_rows([*BILLING, "CLM*C1*2", *segments])]

    line = ["LX*1", "SV1*HC:1*1*UN*1"]
    # The claim's DTP*472, else DTP*434 (RD8: its first date); a line's own DTP*472 first.
    assert dates(["DTP*434*RD8*20261101-20261130", *line]) == [date(2026, 11, 1)]
    assert dates(["DTP*434*D8*20261101", "DTP*472*D8*20261102", *line]) == [date(2026, 11, 2)]
    assert dates(["DTP*472*D8*20261102", "DTP*434*D8*20261101", *line]) == [date(2026, 11, 2)]
    assert dates(["DTP*472*D8*20261102", *line, "DTP*472*D8*20261103", *line]) == [date(2026, 11, 3),
                                                                                       date(2026, 11, 2)]  # fmt: skip
    assert dates(["DTP*472*D8*20261102", *line, "DTP*096*D8*20261103"]) == [date(2026, 11, 2)]
    assert dates(["DTP*096*D8*20261103", "DTP*472*D8*20261102", *line]) == [date(2026, 11, 2)]
    assert _claim_rejections([*BILLING, "CLM*C1*2", "DTP*096*D8*20261103", *line]) == [
        (5, "invalid_claim", "837P claim: DTP*472 at line 1: service date is missing", "C1")
    ]
    assert _claim_rejections([*BILLING, "CLM*C1*2", "DTP*472*D8*2026110", *line])[0][2] == (
        "837P claim: DTP*472 service date: not a CCYYMMDD date"
    )


def test_837_lines_and_their_values() -> None:
    head = [*BILLING, "CLM*C1*2", "DTP*472*D8*20261102"]
    # SV1 / SV2 before any LX are not lines; SV2: SV202-2, else the revenue code SV201; SV203 the charge.
    assert _claim_rejections([*head, "SV1*HC:1*1"]) == [(5, "invalid_claim", "837P claim: 2400: no service line",
                                                         "C1")]  # fmt: skip
    rows = _claim_rows([*head, "LX*1", "SV2*0450*HC:99285*77.5*UN*1", "LX*2", "SV2*0300**8*UN*1"], "837I")
    assert [(r["line_number"], r["procedure_code"], r["billed_amount"]) for r in rows] == [
        (1, "99285", Decimal("77.50")), (2, "0300", Decimal("8.00"))
    ]  # fmt: skip
    assert _claim_rejections([*head, "LX*1", "SV2*0450*HC:99285"], "837I")[0][2] == (
        "837I claim: line charge: required amount is missing"
    )
    assert _claim_rejections([*head, "LX*1", "SV1*HC:1"])[0][2] == "837P claim: line charge: required amount is missing"
    assert _claim_rejections([*head, "LX*1", "SV1*HC:" + "P" * 17 + "*1"])[0][2] == (
        "837P claim: procedure code: longer than 16 bytes"
    )
    # LX01 from 1 to 999,999,999.
    assert [r["line_number"] for r in _claim_rows([*head, "LX*999999999", "SV1*HC:1*1"])] == [999_999_999]
    for number in ("0", "1000000000", "-1", "1.0", ""):
        assert _claim_rejections([*head, "LX*" + number, "SV1*HC:1*1"])[0][2] == (
            "837P claim: LX01 at segment 7: not a positive integer"
        ), number
    # A transaction set of an unsupported kind reads nothing.
    assert _transaction("", [*head, "LX*1", "SV1*HC:1*1"]) == Interchange("000000001")


def test_837_claim_and_member_ids() -> None:
    claim = CLAIM[1:]
    assert _claim_rows([*BILLING, "CLM*" + "K" * 64, *claim])[0]["claim_id"] == "K" * 64
    assert _claim_rejections([*BILLING, "CLM*" + "K" * 65, *claim]) == [
        (5, "invalid_claim", "837P claim: CLM01: longer than 64 bytes", "K" * 64)  # the record id is cut to 64
    ]
    assert _claim_rejections([*BILLING, "CLM", *claim]) == [
        (5, "invalid_claim", "837P claim: CLM01: required value is missing", None)
    ]
    assert _claim_rejections([*BILLING, "CLM*", *claim])[0][3] is None
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
    assert out.held(transaction) == 2
    assert out.held(None) == 2
    transaction.close_claim()
    assert transaction.pending == 1  # a claim without lines still gives one row (its rejection)
    out.rejected.append(rejection(1, "r", "d"))
    assert out.held(transaction) == 4


# -- 835 ------------------------------------------------------------------------------------------------------

PAYMENT = ["BPR*I*100*C*ACH*CCP*01*999999999*DA*123456*1512345678**01*999988880*DA*98765*20260120",
           "TRN*1*CHK1*1512345678", "DTM*405*20260121", "N1*PR*PAYER", "LX*1"]  # fmt: skip
REMIT = ["CLP*R1*1*190*100*0*12*PAYER1*11*1", "CAS*CO*45*50", "NM1*QC*1*X*****MI*MEM1",
         "SVC*HC:99213*150*100**1", "DTM*472*20260105", "CAS*PR*1*50", "REF*6R*3", "AMT*B6*120",
         "SVC*HC:85025*40*0**1", "REF*6R*x", "AMT*B6*0"]  # fmt: skip


def _remit(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "claim_id": "R1", "line_number": 3, "status": "paid", "allowed_amount": Decimal("120.00"),
        "paid_amount": Decimal("100.00"), "denial_reason": None, "remit_order": "20260120:       42:000000000009",
        "source_line": 9,
    }  # fmt: skip
    return row | changes


def _remits(segments: list[str]) -> list[dict[str, object]]:
    out = _transaction("835", segments, control="42")
    assert out.rejected == []
    return out.remits


def _remit_rejections(segments: list[str]) -> list[tuple[object, ...]]:
    out = _transaction("835", segments, control="42")
    assert out.remits == []
    return [(r["line_number"], r["reason"], r["detail"], r["record_id"]) for r in out.rejected]


def test_835_lines() -> None:
    assert _remits(PAYMENT + REMIT) == [
        _remit(),
        _remit(line_number=2, status="denied", allowed_amount=Decimal("0.00"), paid_amount=Decimal("0.00"),
               denial_reason="CO-45", remit_order="20260120:       42:000000000014", source_line=14),
    ]  # fmt: skip


def test_835_remit_order_prefix() -> None:
    def prefix(header: list[str]) -> str:
        return str(_remits([*header, "CLP*R1*1"])[0]["remit_order"]).split(":")[0]

    assert prefix(["BPR*I*1*C*ACH", "DTM*405*20260121"]) == "20260121"  # no BPR16: the production date
    assert prefix(["DTM*405*20260121", "BPR*I*1*C*ACH"]) == "20260121"
    assert prefix(["DTM*405*20260121", PAYMENT[0]]) == "20260120"  # BPR16 first
    assert prefix(["DTM*232*20260122", "DTM*405*20260121", "DTM*405*20260123"]) == "20260121"
    assert prefix(["DTM*232*20260122"]) == "00000000"
    assert prefix(["DTM*405*2026012"]) == "00000000"  # not a date: the default
    assert prefix(["BPR*I*1*C*ACH*CCP*01*9*DA*1*1**01*9*DA*1*20260120-"]) == "00000000"


def test_835_claims_without_lines_and_what_closes_a_claim() -> None:
    rows = _remits(["CLP*R1*4", "CAS*CO*50*10", "CAS*CO*97*10", "LX*2", "SVC*HC:1*10*10", "CAS*PR*1*1",
                    "CLP*R2*1", "PLB*1*2", "SVC*HC:1*10*10", "CLP*R3*4"])  # fmt: skip
    assert [(r["claim_id"], r["line_number"], r["status"], r["paid_amount"], r["allowed_amount"],
             r["denial_reason"], r["source_line"]) for r in rows] == [
        ("R1", 0, "denied", Decimal("0.00"), None, "CO-50", 1),  # the first CAS of the claim
        ("R2", 0, "paid", None, None, None, 7),
        ("R3", 0, "denied", Decimal("0.00"), None, None, 10),
    ]  # fmt: skip
    assert _remits(["SVC*HC:1*10*10", "CAS*CO*1", "REF*6R*4", "AMT*B6*1"]) == []  # nothing before a CLP


def test_835_line_values() -> None:
    rows = _remits(["CLP*R1*1", "REF*6R*7", "AMT*B6*5", "SVC*HC:1*10*10", "REF*EJ*8", "AMT*AU*9", "CAS*CO*1",
                    "CAS*CO*2", "SVC*HC:1*10*0", "CAS**45", "SVC*HC:1*10*0", "CAS*PR", "REF*6R*999999999",
                    "SVC*HC:1*10*10", "REF*6R*1000000000", "SVC*HC:1*10*10", "REF*6R*0"])  # fmt: skip
    assert [(r["line_number"], r["status"], r["allowed_amount"], r["denial_reason"]) for r in rows] == [
        (1, "paid", None, None), (2, "denied", None, "-45"), (999_999_999, "denied", None, "PR-"),
        (4, "paid", None, None), (5, "paid", None, None),
    ]  # fmt: skip
    # The first CAS of a line is its reason; a denied claim (CLP02 4) denies every line.
    rows = _remits(["CLP*R1*4", "CAS*OA*23", "SVC*HC:1*10*10", "CAS*CO*1", "CAS*CO*2", "SVC*HC:1*10*10"])
    assert [(r["status"], r["paid_amount"], r["denial_reason"]) for r in rows] == [
        ("denied", Decimal("10.00"), "CO-1"), ("denied", Decimal("10.00"), "OA-23")
    ]  # fmt: skip


def test_835_reversal() -> None:
    rows = _remits(["CLP*R1*22", "CAS*CO*45", "SVC*HC:1*-10*0**1", "AMT*B6*-10", "SVC*HC:1*-10*-10"])
    assert [(r["status"], r["allowed_amount"], r["paid_amount"], r["denial_reason"]) for r in rows] == [
        ("pending", None, None, None), ("pending", None, None, None)
    ]  # fmt: skip
    assert [r["status"] for r in _remits(["CLP*R1*2", "SVC*HC:1*10*5"])] == ["paid"]


def test_835_bad_claims() -> None:
    for segments, detail, record_id in (
        (["CLP"], "835 claim: CLP01: required value is missing", None),
        (["CLP*" + "K" * 65 + "*1"], "835 claim: CLP01: longer than 64 bytes", "K" * 64),
        (["CLP*R1"], "835 claim: CLP02: not a claim status code", "R1"),
        (["CLP*R1*P"], "835 claim: CLP02: not a claim status code", "R1"),
        (["CLP*R1*1", "SVC*HC:1**10"], "835 claim: SVC02 charge: required amount is missing", "R1"),
        (
            ["CLP*R1*1", "SVC*HC:1*10*1.001"],
            "835 claim: SVC03 paid amount: not an amount with up to 10 digits and 2 decimals",
            "R1",
        ),
        (["CLP*R1*1", "SVC*HC:1*10*1", "AMT*B6*x"], "835 claim: AMT*B6 allowed amount: not a decimal amount", "R1"),
        (["CLP*R1*4", "CAS*" + "G" * 200 + "*" + "R" * 56], "835 claim: CAS group-reason: longer than 256 bytes", "R1"),
    ):
        assert _remit_rejections(segments) == [(1, "invalid_claim", detail, record_id)], segments
    # A reason of 256 bytes loads; a long reason of a paid line is not read.
    assert _remits(["CLP*R1*4", "CAS*" + "G" * 200 + "*" + "R" * 55])[0]["denial_reason"] == "G" * 200 + "-" + "R" * 55
    assert _remits(["CLP*R1*1", "CAS*" + "G" * 300, "SVC*HC:1*10*1"])[0]["denial_reason"] is None
    assert _remits(["CLP*R1*1"])[0]["remit_order"] == "00000000:       42:000000000001"


# -- the file: envelopes, versions, errors, release ---------------------------------------------------------


def _summary(chunks: list[FeedChunk]) -> list[tuple[object, ...]]:
    """Per chunk: its tags, duplicates, (table, claim id, line) of its rows and its rejections."""
    return [
        (c.part, c.retracts, c.whole_file, c.duplicates,
         [(name, r["claim_id"], r["line_number"]) for name, t in c.tables.items() for r in t.to_pylist()],
         [(r["line_number"], r["reason"], r["detail"], r["record_id"]) for r in c.rejected.to_pylist()])
        for c in chunks
    ]  # fmt: skip


def _envelope(control: str, errors: str) -> tuple[object, ...]:
    return (None, "invalid_envelope", f"interchange {control}: envelope check failed ({errors})", control or None)


def test_transaction_kinds() -> None:
    def kind(st: str, gs_version: str = "") -> str | None:
        return _transaction_kind(Segment(st, "~", "*", ":"), gs_version)

    assert kind("ST*837*0001*005010X222A1") == "837P"
    assert kind("ST*837*0001*005010X223A2") == "837I"
    assert kind("ST*837*0001", "005010X223A2") == "837I"  # no ST03: the group's version
    assert kind("ST*837*0001*005010X222A1", "005010X223A2") == "837P"  # ST03 first
    assert kind("ST*835*0001*005010X221A1") == "835"
    assert kind("ST*835*0001", "005010X221A1") == "835"
    assert kind("ST*270*0001*005010X279A1") == ""
    for unsupported in ("ST*837*0001*005010X999A1", "ST*835*0001*005010X222A1", "ST*837*0001*004010X098A1",
                        "ST*270*0001*004010X092A1", "ST*837*0001*X005010X222A1"):  # fmt: skip
        assert kind(unsupported) is None, unsupported
    assert kind("ST*837*0001") is None


def test_versions() -> None:
    unsupported = (None, "unsupported_version", "interchange 000000001: X12 version is not 005010 (00501 ISA, "
                   "005010X222A1/X223A2/X221A1)", "000000001")  # fmt: skip
    for name, data in {
        "GS08": x12_837([Claim("A1")]).replace(b"X*005010X222A1", b"X*004010X098A1"),
        "GS08 prefix": x12_837([Claim("A1")]).replace(b"X*005010X222A1", b"X*X005010X222A1"),
        "ST03": x12_837([Claim("A1")]).replace(b"0001*005010X222A1", b"0001*005010X999A1"),
        "ISA12": x12_837([Claim("A1")], version="00401"),
    }.items():
        assert _summary(_read(data)) == [(None, None, False, 0, [], [unsupported])], name
    # An unsupported version is never released early, however many rows it holds.
    many = x12_837([Claim(f"A{i}") for i in range(4)], version="00401")
    assert _summary(_read(many, max_rows=1)) == [(None, None, False, 0, [], [unsupported])]


def test_unsupported_transaction_set() -> None:
    data = x12_interchange([("270", "005010X279A1", ["BHT*0022*13", "HL*1**20*1", "NM1*IL*1*X*****MI*M1",
                                                     "CLM*C1*1", "LX*1", "SV1*HC:1*1", "DTP*472*D8*20260105"])],
                           control=3)  # fmt: skip
    assert _summary(_read(data)) == [
        (None, None, False, 0, [], [(3, "unsupported_transaction", "ST01: transaction set is not 837 or 835", None)])
    ]


def test_envelope_failures_in_detail() -> None:
    good = x12_837([Claim("A1")], control=1)
    two_broken_sets = x12_interchange([("837", "005010X222A1", ["BHT*1"]), ("837", "005010X222A1", ["BHT*1"])],
                                      break_se_count=True)  # fmt: skip
    isa = good[: good.index(b"~")].decode()
    for name, data, errors in (
        (
            "GE and IEA",
            good.replace(b"GE*1*1", b"GE*2*1").replace(b"IEA*1*000000001", b"IEA*1*000000009"),
            "GS error 5; ISA error 001",
        ),  # sorted
        ("two bad SE counts", two_broken_sets, "ST error 4"),  # once
        ("cut before IEA", good[: good.index(b"IEA")], "ISA error 023"),
        (
            "ST outside GS, no IEA",
            f"{isa}~\nST*837*0001*005010X222A1~\nGE*1*1~\n".encode(),
            "GS error 3; GS error 4; IEA: interchange trailer missing",
        ),  # pyx12 closed the ISA loop itself at GE
        (
            "bad SE, no IEA",
            x12_837([Claim("A1")], break_se_count=True).split(b"GE*")[0],
            "GS error 3; ISA error 023; ST error 4",
        ),
    ):
        assert _summary(_read(data)) == [(None, None, False, 0, [], [_envelope("000000001", errors)])], name


def test_an_isa_before_the_previous_iea() -> None:
    good = x12_837([Claim("A1")], control=1)
    chunks = _read(good[: good.index(b"IEA")] + x12_837([Claim("B1")], control=2))
    assert _summary(chunks) == [
        (None, None, False, 0, [("claims", "B1", 1)],
         [_envelope("000000001", "ISA: previous interchange has no IEA")])
    ]  # fmt: skip


def test_what_pyx12_cannot_tokenise_fails_its_interchange_and_ends_the_file() -> None:
    good, third = x12_837([Claim("A1")], control=1), x12_837([Claim("C1")], control=3)
    bad_isa = x12_837([Claim("B1")], control=2).replace(b"*ZZ*SUBMITTER", b"*ZZ*SUB*MITTER", 1)  # 17 elements
    assert _summary(_read(good + bad_isa + third)) == [
        (None, None, False, 0, [("claims", "A1", 1)], [_envelope("", "segment 31: not readable as X12")])
    ]
    assert _summary(_read(good[: good.index(b"CLM")] + bad_isa + third)) == [
        (None, None, False, 0, [], [_envelope("000000001", "segment 21: not readable as X12")])
    ]
    assert _summary(_read(b"ISB*00")) == [
        (None, None, True, 0, [], [(None, "unreadable", "file: not an X12 interchange (no valid ISA segment)", None)])
    ]
    assert _read(b"ISB*00")[0].rejected.schema == REJECTED


def test_segments_between_interchanges_are_skipped() -> None:
    data = x12_837([Claim("A1")], control=1) + b"XYZ*1~\nCLM*Z9*1~\n" + x12_837([Claim("B1")], control=2)
    assert _summary(_read(data)) == [(None, None, False, 0, [("claims", "A1", 1), ("claims", "B1", 1)], [])]


def test_pyx12_segment_errors() -> None:
    # Outside a claim (a broken HL parent): every claim of the set, with the segment's position and code.
    data = x12_837([Claim("A1"), Claim("A2")]).replace(b"HL*4*3*22*", b"HL*4*9*22*")
    error = "837P claim: segment 33: pyx12 segment error HL2"
    assert _summary(_read(data)) == [
        (None, None, False, 0, [], [(21, "invalid_claim", error, "A1"), (41, "invalid_claim", error, "A2")])
    ]
    # Inside a claim: that claim only, with its first error.
    data = x12_837([Claim("A1"), Claim("A2")]).replace(b"\nN3*", b"\n N3*").replace(b"LX*1~", b" LX*1*~")
    assert _summary(_read(data)) == [
        (None, None, False, 0, [], [(21, "invalid_claim", "837P claim: segment 24: pyx12 segment error 1", "A1"),
                                    (41, "invalid_claim", "837P claim: segment 44: pyx12 segment error 1", "A2")]),
    ]  # fmt: skip
    # Trailing element separators (SEG1) are tolerated, inside a claim and outside.
    data = x12_837([Claim("A1")]).replace(b"LX*1~", b"LX*1*~").replace(b"HL*1**20*1~", b"HL*1**20*1*~")
    assert _summary(_read(data)) == [(None, None, False, 0, [("claims", "A1", 1)], [])]


def test_release_before_iea_and_retraction() -> None:
    # Two lines of one claim: released at the SE when the bound is 2, held to the IEA when it is 3.
    data = x12_837([Claim("A1", lines=(ClaimLine(), ClaimLine()))])
    lines = [("claims", "A1", 1), ("claims", "A1", 2)]
    assert _summary(_read(data, max_rows=2)) == [(1, None, False, 0, lines, [])]
    assert _summary(_read(data, max_rows=3)) == [(None, None, False, 0, lines, [])]
    # Released rows carry their duplicates; a released interchange that then fails is retracted by its ordinal.
    twice = [Claim("A1", lines=(ClaimLine(), ClaimLine()))] * 2
    data = x12_837([Claim("Z1")], control=1) + x12_837(twice, control=2, break_se_count=True)
    assert _summary(_read(data, max_rows=4)) == [
        (None, None, False, 0, [("claims", "Z1", 1)], []),  # decided rows go first
        (2, None, False, 2, lines, []),
        (None, 2, False, 0, [], [_envelope("000000002", "ST error 4")]),
    ]
    # After a release, a structure error outside any claim fails the interchange.
    claims = [Claim(f"H{i}", member_id=f"S{i}") for i in range(3)]
    data = x12_837(claims).replace(b"HL*6*5*22*", b"HL*6*99*22*")
    assert _summary(_read(data, max_rows=1)) == [
        (1, None, False, 0, [("claims", "H0", 1)], []),
        (1, None, False, 0, [("claims", "H1", 1)], []),
        (1, None, False, 0, [("claims", "H2", 1)], []),
        (None, 1, False, 0, [], [_envelope("000000001", "segment 53: transaction set structure error after release")]),
    ]
    assert [c.rejected.schema for c in _read(data, max_rows=1)] == [REJECTED] * 4


def test_decided_interchanges_are_released_in_chunks_of_the_bound() -> None:
    data = b"".join(x12_837([Claim(f"A{i}")], control=i) for i in range(1, 4))
    assert _summary(_read(data, max_rows=2)) == [
        (None, None, False, 0, [("claims", "A1", 1), ("claims", "A2", 1)], []),
        (None, None, False, 0, [("claims", "A3", 1)], []),
    ]


def test_chunk_tables() -> None:
    remit = x12_835([Adjudication("A1", "1", ((1, "150", "100", "120", None),))], control=1, paid_on="20260125")
    older = x12_835([Adjudication("A1", "1", ((1, "150", "90", "110", None),))], control=2, paid_on="20260120")
    claims = x12_837([Claim("A1"), Claim("A1")], control=3)
    chunks = _read(remit + older + claims)
    assert _summary(chunks) == [(None, None, False, 2, [("claims", "A1", 1), ("remittances", "A1", 1)], [])]
    # The newest remittance by remit_order (payment date first), not the last in the file.
    assert [r["paid_amount"] for r in _rows(chunks, "remittances")] == [Decimal("100.00")]
    assert chunks[0].tables["claims"].schema == with_source_line(CLAIMS)
    assert chunks[0].tables["remittances"].schema == with_source_line(REMITTANCES)
    assert chunks[0].rejected.schema == REJECTED


def test_what_follows_where_pyx12_stopped() -> None:
    good = x12_837([Claim("A1")], control=1)
    stopped = (31, "unreadable", "file: not read past segment 30 (an empty segment or one without a terminator)", None)
    assert _summary(_read(good + b"X")) == [(None, None, False, 0, [("claims", "A1", 1)], [stopped])]
    for blank in " \t\r\n\x00\x1a":
        assert _summary(_read(good + blank.encode() * 3)) == [(None, None, False, 0, [("claims", "A1", 1)], [])]
    # An open interchange cut inside a segment is its own failure; with more segments after the cut (beyond
    # pyx12's buffer), what follows is also accounted for.
    cut = good[: good.index(b"IEA")] + b"NTE*" + b"x" * 20_000
    assert _summary(_read(cut)) == [(None, None, False, 0, [], [_envelope("000000001", "ISA error 023")])]
    stopped_open = (30, "unreadable", "file: not read past segment 29 (an empty segment or one without a "
                    "terminator)", None)  # fmt: skip
    assert _summary(_read(cut + b"~\n" + good)) == [
        (None, None, False, 0, [], [_envelope("000000001", "ISA error 023"), stopped_open])
    ]


def test_bytes_are_latin_1_and_a_cr_stays() -> None:
    data = x12_837([Claim("A\u00e9\rB")])
    assert "\u00e9".encode("latin-1") in data
    assert [r["claim_id"] for r in _rows(_read(data), "claims")] == ["A\u00e9\rB"]


def test_837_line_numbers_are_checked_835_ones_are_not() -> None:
    """The module promises pyx12's 837 LX numbering check (2400 LX01 = 1, 2, ... in each claim), but pyx12 only
    makes it when asked (``check_837_lx``): a claim numbering two lines 1 lost one of them as a duplicate."""
    two = (ClaimLine(), ClaimLine())
    data = x12_837([Claim("A1", lines=two), Claim("A2", lines=two)]).replace(b"LX*2~", b"LX*1~", 1)
    assert _summary(_read(data)) == [
        (None, None, False, 0, [("claims", "A2", 1), ("claims", "A2", 2)],
         [(21, "invalid_claim", "837P claim: segment 28: pyx12 segment error LX", "A1")]),
    ]  # fmt: skip
    # The LX segments of an 835 (header numbers, counted on across its transaction sets) are not claim lines.
    remit = x12_835([Adjudication("A1", "1", ((1, "150", "100", "120", None),))], control=1)
    data = remit + x12_835([Adjudication("B1", "1", ((1, "150", "100", "120", None),))], control=2)
    assert _summary(_read(data)) == [(None, None, False, 0, [("remittances", "A1", 1), ("remittances", "B1", 1)], [])]


def test_the_group_version_and_payment_date_are_per_interchange() -> None:
    """An interchange without a GS (pyx12 accepts one) has no version, whatever the previous group said; an
    835 without a payment date orders its remittances under ``00000000``."""
    second = x12_837([Claim("B1")], control=2).replace(b"ST*837*0001*005010X222A1", b"ST*837*0001")
    no_group = b"~\n".join(s for s in second.split(b"~\n") if not s.startswith((b"GS*", b"GE*")))
    data = x12_837([Claim("A1")], control=1) + no_group.replace(b"IEA*1*", b"IEA*0*")
    unsupported = (None, "unsupported_version", "interchange 000000002: X12 version is not 005010 (00501 ISA, "
                   "005010X222A1/X223A2/X221A1)", "000000002")  # fmt: skip
    assert _summary(_read(data)) == [(None, None, False, 0, [("claims", "A1", 1)], [unsupported])]
    remit = x12_835([Adjudication("A1", "1", ((1, "150", "100", "120", None),))], control=7, paid_on="")
    assert [r["remit_order"] for r in _rows(_read(remit), "remittances")] == ["00000000:000000007:000000000014"]


def test_a_group_header_between_interchanges_fails_the_next_one() -> None:
    good = x12_837([Claim("A1")], control=1)
    group = good.split(b"~\n")[1]  # pyx12 reports its control number as a duplicate
    assert group.startswith(b"GS*")
    data = good + group + b"~\n" + x12_837([Claim("B1")], control=2)
    assert _summary(_read(data)) == [
        (None, None, False, 0, [("claims", "A1", 1)], [_envelope("000000002", "GS error 6")])
    ]


def test_837_without_any_hl() -> None:
    rows = _claim_rows(["NM1*IL*1*X*****MI*M1", "CLM*C1*1", "LX*1", "SV1*HC:1*1", "DTP*472*D8*20260105"])
    assert [(r["patient_id"], r["provider_npi"], r["dx_code"]) for r in rows] == [("M1", None, None)]
    # Without any NM1*IL the claim has no member id.
    assert _claim_rejections(["CLM*C1*1", "LX*1", "SV1*HC:1*1", "DTP*472*D8*20260105"]) == [
        (1, "invalid_claim", "837P claim: NM109 member id: required value is missing", "C1")
    ]


def test_every_kind_of_row_counts_towards_the_bound() -> None:
    bad = x12_837([Claim("BAD", lines=(ClaimLine(billed="1.001"),))], control=1)
    remit = x12_835([Adjudication("R1", "1", ((1, "150", "100", "120", None),))], control=2)
    data = bad + remit + x12_837([Claim("A3")], control=3) + x12_837([Claim("A4")], control=4)
    bad_claim = (
        21,
        "invalid_claim",
        "837P claim: line charge: not an amount with up to 10 digits and 2 decimals",
        "BAD",
    )
    assert _summary(_read(data, max_rows=2)) == [
        (None, None, False, 0, [("remittances", "R1", 1)], [bad_claim]),
        (None, None, False, 0, [("claims", "A3", 1), ("claims", "A4", 1)], []),
    ]
    # An interchange of two remittances, or of two rejected claims, is released early at the bound.
    remits = x12_835([Adjudication("R1", "1", ((1, "1", "1", "1", None),)), Adjudication("R2", "4")])
    assert _summary(_read(remits, max_rows=2)) == [
        (1, None, False, 0, [("remittances", "R1", 1), ("remittances", "R2", 0)], [])
    ]
    bad_two = x12_837([Claim("B1", rendering_npi="1"), Claim("B2", rendering_npi="1")])
    assert [(c.part, len(c.rejected)) for c in _read(bad_two, max_rows=2)] == [(1, 2)]
    out = Interchange("1")
    out.remits.append({})
    assert out.held(None) == 1


def test_more_envelope_failures_at_the_end_of_the_file() -> None:
    good = x12_837([Claim("A1")], control=1)
    cut = good[: good.index(b"SE*")]  # inside the transaction set: its claims are not read either
    assert _summary(_read(cut)) == [
        (None, None, False, 0, [], [_envelope("000000001", "GS error 3; ISA error 023; ST error 2")])
    ]
    # NUL padding beyond pyx12's buffer is not unread data either; text there is.
    assert _summary(_read(good + b"\x00" * 40_000)) == [(None, None, False, 0, [("claims", "A1", 1)], [])]
    stopped = (31, "unreadable", "file: not read past segment 30 (an empty segment or one without a terminator)", None)
    assert _summary(_read(good + b" " * 40_000 + b"X")) == [(None, None, False, 0, [("claims", "A1", 1)], [stopped])]


def test_a_terminator_that_python_counts_as_white_space() -> None:
    """The file separator (0x1C), a common segment terminator, is white space to ``str.strip()``: after an empty
    segment, the one segment left (its terminator last) is still a segment, so it is reported unread."""
    good = x12_837([Claim("A1")], sep=Separators(segment="\x1c", newline=""))
    assert _summary(_read(good)) == [(None, None, False, 0, [("claims", "A1", 1)], [])]
    iea = good.index(b"IEA")
    stopped = (30, "unreadable", "file: not read past segment 29 (an empty segment or one without a terminator)", None)
    assert _summary(_read(good[:iea] + b"\x1c" + good[iea:])) == [
        (None, None, False, 0, [], [_envelope("000000001", "ISA error 023"), stopped])
    ]


def test_the_tail_after_where_pyx12_stopped_is_read_in_blocks() -> None:
    def chunks(blocks: int) -> Iterator[bytes]:
        yield x12_837([Claim("A1")]) + b"X"  # no terminator after the X: pyx12 stops, the rest is scanned
        for _ in range(blocks):
            yield b" " * 65_536

    list(read_x12("raw/claims/x12/f.x12", chunks(1)))  # warm: pyx12's and pyarrow's first-use allocations
    tracemalloc.start()
    try:
        chunks_out = list(read_x12("raw/claims/x12/f.x12", chunks(256)))  # 16 MiB of tail
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [r["reason"] for r in _rejected(chunks_out)] == ["unreadable"]
    assert peak < 4 << 20


def test_an_interchange_without_a_control_number() -> None:
    data = x12_837([Claim("A1")], break_se_count=True).replace(b"*000000001*0*P*", b"**0000000000*P*", 1)
    assert _summary(_read(data)) == [(None, None, False, 0, [], [_envelope("", "ISA error 001; ST error 4")])]
