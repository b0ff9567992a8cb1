"""Realistic batch files of the X12 and DMS CDC feeds (CONTRACT §8), for tests, ``make run`` and benchmarks.

Every builder is pure and deterministic for its arguments. The X12 builders write well-formed 005010
interchanges (837P, 837I, 835) with the separators asked for, including the names, addresses and birth dates a
real file carries (so that tests can check none of them travels past ``raw/``); :func:`x12_interchange` can
also break the envelope on purpose (a wrong SE count) or write another version (004010).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

__all__ = [
    "PHI_MARKERS",
    "Adjudication",
    "Adt",
    "Claim",
    "ClaimLine",
    "Separators",
    "cdc_file",
    "hl7_file",
    "hl7_message",
    "sample_files",
    "x12_835",
    "x12_837",
    "x12_interchange",
]

PHI_MARKERS = ("Zyxwvut", "Qwertyuiop", "742 Evergreen", "Springfieldia", "555-0142", "078-05-1120", "19591231")
"""Strings that appear in the generated files only as PHI (names, street, city, phone, SSN, birth date)."""


@dataclass(frozen=True, slots=True)
class Separators:
    element: str = "*"
    component: str = ":"
    repetition: str = "^"
    segment: str = "~"
    newline: str = "\n"


@dataclass(frozen=True, slots=True)
class ClaimLine:
    procedure: str = "99213"
    billed: str = "150.00"
    service_date: str = "20260105"
    dx_pointer: int = 1


@dataclass(frozen=True, slots=True)
class Claim:
    claim_id: str
    member_id: str = "MEM0001"
    patient_member_id: str | None = None  # set: the patient is not the subscriber (2000C loop)
    rendering_npi: str | None = "1234567893"
    billing_npi: str = "1992753880"
    diagnoses: tuple[str, ...] = ("I10", "E119")
    lines: tuple[ClaimLine, ...] = (ClaimLine(),)


@dataclass(frozen=True, slots=True)
class Adjudication:
    """One CLP: ``status`` is CLP02 (1 processed as primary, 4 denied, 22 reversal); per line ``(line number,
    charge, paid, allowed, first CAS as (group, reason, amount) or None)``."""

    claim_id: str
    status: str = "1"
    lines: tuple[tuple[int, str, str, str, tuple[str, str, str] | None], ...] = ()
    claim_adjustment: tuple[str, str, str] | None = None


@dataclass(slots=True)
class _Writer:
    sep: Separators
    segments: list[str] = field(default_factory=list)

    def add(self, *elements: str) -> None:
        self.segments.append(self.sep.element.join(elements))


def _isa(sep: Separators, control: int, version: str, when: datetime) -> str:
    e = sep.element
    fields = [
        "ISA", "00", " " * 10, "00", " " * 10, "ZZ", "SUBMITTER".ljust(15), "ZZ", "RECEIVER".ljust(15),
        when.strftime("%y%m%d"), when.strftime("%H%M"), sep.repetition if version == "00501" else "U",
        version, f"{control:09d}", "0", "P", sep.component,
    ]  # fmt: skip
    return e.join(fields)


def x12_interchange(
    transactions: Sequence[tuple[str, str, list[str]]],
    *,
    control: int = 1,
    sep: Separators | None = None,
    version: str = "00501",
    when: datetime | None = None,
    break_se_count: bool = False,
) -> bytes:
    """An interchange of one functional group holding ``transactions`` ``(ST01, implementation guide, body
    segments)``; ``body`` segments are element-joined strings without the segment terminator."""
    sep = sep or Separators()
    when = when or datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    e = sep.element
    group = "HC" if transactions and transactions[0][0] == "837" else "HP"
    gs_version = transactions[0][1] if transactions else "005010X222A1"
    segments = [
        _isa(sep, control, version, when),
        e.join(["GS", group, "SENDER", "RECEIVER", when.strftime("%Y%m%d"), when.strftime("%H%M"), str(control),
                "X", gs_version]),
    ]  # fmt: skip
    for number, (st01, guide, body) in enumerate(transactions, start=1):
        st_control = f"{number:04d}"
        segments.append(e.join(["ST", st01, st_control, guide]))
        segments += body
        count = len(body) + 2 + (1 if break_se_count else 0)
        segments.append(e.join(["SE", str(count), st_control]))
    segments.append(e.join(["GE", str(len(transactions)), str(control)]))
    segments.append(e.join(["IEA", "1", f"{control:09d}"]))
    return (sep.segment + sep.newline).join(segments).encode("latin-1") + (sep.segment + sep.newline).encode()


def _837_body(claims: Sequence[Claim], institutional: bool, sep: Separators) -> list[str]:
    w = _Writer(sep)
    c = sep.component
    w.add("BHT", "0019", "00", "BATCH1", "20260110", "1200", "CH")
    w.add("NM1", "41", "2", "SUBMITTER CLINIC", "", "", "", "", "46", "S123")
    w.add("PER", "IC", "Zyxwvut Qwertyuiop", "TE", "5555550142")
    w.add("NM1", "40", "2", "PAYER", "", "", "", "", "46", "P999")
    hl = 0
    for claim in claims:
        hl += 1
        billing = hl
        w.add("HL", str(billing), "", "20", "1")
        w.add("NM1", "85", "2", "SPRINGFIELDIA CLINIC", "", "", "", "", "XX", claim.billing_npi)
        w.add("N3", "742 Evergreen Terrace")
        w.add("N4", "Springfieldia", "MA", "021390000")
        w.add("REF", "EI", "123456789")
        hl += 1
        subscriber = hl
        w.add("HL", str(subscriber), str(billing), "22", "1" if claim.patient_member_id else "0")
        w.add("SBR", "P", "18" if not claim.patient_member_id else "", "GRP1", "", "", "", "", "", "CI")
        w.add("NM1", "IL", "1", "Zyxwvut", "Qwertyuiop", "", "", "", "MI", claim.member_id)
        w.add("N3", "742 Evergreen Terrace")
        w.add("N4", "Springfieldia", "MA", "021390000")
        w.add("DMG", "D8", "19591231", "F")
        w.add("REF", "SY", "078-05-1120")
        w.add("NM1", "PR", "2", "PAYER", "", "", "", "", "PI", "P999")
        if claim.patient_member_id:
            hl += 1
            w.add("HL", str(hl), str(subscriber), "23", "0")
            w.add("PAT", "19")
            w.add("NM1", "QC", "1", "Zyxwvut", "Qwertyuiop", "", "", "", "MI", claim.patient_member_id)
            w.add("N3", "742 Evergreen Terrace")
            w.add("N4", "Springfieldia", "MA", "021390000")
            w.add("DMG", "D8", "19591231", "M")
        total = sum(float(line.billed) for line in claim.lines)
        place = f"11{c}B{c}1" if not institutional else f"13{c}A{c}1"
        w.add("CLM", claim.claim_id, f"{total:.2f}", "", "", place, "Y", "A", "Y", "Y")
        if institutional:
            w.add("DTP", "434", "RD8", f"{claim.lines[0].service_date}-{claim.lines[-1].service_date}")
        codes = [f"{'ABK' if i == 0 else 'ABF'}{c}{dx}" for i, dx in enumerate(claim.diagnoses)]
        w.add("HI", *codes)
        if claim.rendering_npi:
            w.add("NM1", "82", "1", "Zyxwvut", "Qwertyuiop", "", "", "", "XX", claim.rendering_npi)
        for number, line in enumerate(claim.lines, start=1):
            w.add("LX", str(number))
            if institutional:
                w.add("SV2", "0450", f"HC{c}{line.procedure}", line.billed, "UN", "1")
            else:
                w.add("SV1", f"HC{c}{line.procedure}", line.billed, "UN", "1", "", "", str(line.dx_pointer))
            w.add("DTP", "472", "D8", line.service_date)
            w.add("REF", "6R", str(number))
    return w.segments


def x12_837(
    claims: Sequence[Claim],
    *,
    institutional: bool = False,
    control: int = 1,
    sep: Separators | None = None,
    version: str = "00501",
    break_se_count: bool = False,
) -> bytes:
    """An 837P (or 837I with ``institutional``) interchange with ``claims``, all under one transaction set."""
    sep = sep or Separators()
    guide = "005010X223A2" if institutional else "005010X222A1"
    if version != "00501":
        guide = "004010X096A1" if institutional else "004010X098A1"
    body = _837_body(claims, institutional, sep)
    return x12_interchange([("837", guide, body)], control=control, sep=sep, version=version,
                           break_se_count=break_se_count)  # fmt: skip


def x12_835(
    adjudications: Sequence[Adjudication],
    *,
    control: int = 1,
    paid_on: str = "20260120",
    sep: Separators | None = None,
) -> bytes:
    """An 835 interchange adjudicating ``adjudications`` in order (a reversal then its correction: two CLPs)."""
    sep = sep or Separators()
    c = sep.component
    w = _Writer(sep)
    total = 0.0
    body = _Writer(sep)
    for number, adj in enumerate(adjudications, start=1):
        body.add("LX", str(number))
        charge = sum(float(line[1]) for line in adj.lines)
        paid = sum(float(line[2]) for line in adj.lines)
        total += paid
        body.add("CLP", adj.claim_id, adj.status, f"{charge:.2f}", f"{paid:.2f}", "0", "12", f"PAYER{number}", "11",
                 "1")  # fmt: skip
        if adj.claim_adjustment:
            body.add("CAS", *adj.claim_adjustment)
        body.add("NM1", "QC", "1", "Zyxwvut", "Qwertyuiop", "", "", "", "MI", "MEM0001")
        body.add("DTM", "232", "20260105")
        for line_number, line_charge, line_paid, allowed, cas in adj.lines:
            body.add("SVC", f"HC{c}99213", line_charge, line_paid, "", "1")
            body.add("DTM", "472", "20260105")
            if cas:
                body.add("CAS", *cas)
            body.add("REF", "6R", str(line_number))
            body.add("AMT", "B6", allowed)
    w.add("BPR", "I", f"{total:.2f}", "C", "ACH", "CCP", "01", "999999999", "DA", "123456", "1512345678", "",
          "01", "999988880", "DA", "98765", paid_on)  # fmt: skip
    w.add("TRN", "1", f"CHK{control}", "1512345678")
    w.add("DTM", "405", paid_on)
    w.add("N1", "PR", "PAYER")
    w.add("N1", "PE", "SPRINGFIELDIA CLINIC", "XX", "1992753880")
    w.add("N3", "742 Evergreen Terrace")
    return x12_interchange([("835", "005010X221A1", w.segments + body.segments)], control=control, sep=sep)


def cdc_file(rows: Sequence[Mapping[str, object]], *, full_load: bool = False, parquet: bool = False) -> bytes:
    """A DMS S3-target file (``AddColumnName=true``, ``TimestampColumnName=dms_commit_ts``): CDC rows carry
    ``Op`` first; a full-load file has no ``Op`` column."""
    if not rows:
        raise ValueError("a DMS file has at least one row")
    columns = [c for c in rows[0] if not (full_load and c == "Op")]
    table = pa.table({c: pa.array([None if r.get(c) is None else str(r[c]) for r in rows], pa.string())
                      for c in columns})  # fmt: skip
    out = io.BytesIO()
    if parquet:
        pq.write_table(table, out)
    else:
        pcsv.write_csv(table, out, pcsv.WriteOptions(quoting_style="needed"))
    return out.getvalue()


def sample_files() -> dict[str, bytes]:
    """One file of each format, keyed by its landing key: what ``make run`` uploads so every table fills."""
    claims = [
        Claim("CLM1001", lines=(ClaimLine("99213", "150.00"), ClaimLine("85025", "40.00", dx_pointer=2))),
        Claim("CLM1002", member_id="MEM0002", patient_member_id="MEM0002-01"),
    ]
    institutional = [Claim("CLM2001", lines=(ClaimLine("99283", "900.00"),))]
    remittance = [
        Adjudication("CLM1001", "1", ((1, "150.00", "100.00", "120.00", ("CO", "45", "30.00")),
                                      (2, "40.00", "0.00", "0.00", ("CO", "97", "40.00")))),
        Adjudication("CLM2001", "4", ((1, "900.00", "0.00", "0.00", ("CO", "50", "900.00")),)),
    ]  # fmt: skip
    person = {"family_name": "Zyxwvut", "given_name": "Qwertyuiop", "birth_date": "1959-12-31", "sex": "female",
              "postal_code": "02139", "street_address": "742 Evergreen Terrace"}  # fmt: skip
    visit = {"patient_id": "CDC-P1", "provider_id": "DR7", "encounter_type": "inpatient",
             "admit_at": "2026-01-01T08:00:00Z", "discharge_at": "", "primary_dx": "I10"}  # fmt: skip
    t0, t1 = "2026-01-05 10:00:00", "2026-01-05 11:00:00"
    patients = [{"dms_commit_ts": t0, "patient_id": f"CDC-P{i}", **person} for i in (1, 2)]
    changes = [{"Op": "U", "dms_commit_ts": t1, "patient_id": "CDC-P1", **person, "postal_code": "10001"},
               {"Op": "D", "dms_commit_ts": t1, "patient_id": "CDC-P2", **person}]  # fmt: skip
    encounters = [{"dms_commit_ts": t0, "encounter_id": "CDC-E1", **visit}]
    discharge = [{"Op": "U", "dms_commit_ts": t1, "encounter_id": "CDC-E1", **visit,
                  "discharge_at": "2026-01-03T10:00:00Z"}]  # fmt: skip
    adt = [
        Adt("ADT0001", "20260105080000", "A01", "HL7-P1", visit="HL7-V1", admit="20260105080000", dx="I10"),
        Adt("ADT0002", "20260105120000", "A02", "HL7-P1", visit="HL7-V1", attending="DR9"),
        Adt("ADT0003", "20260106100000", "A08", "HL7-P1", visit="HL7-V1", attending="DR9", postal="10001"),
        Adt("ADT0004", "20260107090000", "A03", "HL7-P1", visit="HL7-V1", attending="DR9", postal="10001",
            discharge="20260107083000"),
    ]  # fmt: skip
    return {
        "raw/claims/x12/sample-837p.x12": x12_837(claims, control=101),
        "raw/claims/x12/sample-837i.x12": x12_837(institutional, institutional=True, control=102),
        "raw/claims/x12/sample-835.x12": x12_835(remittance, control=103),
        "raw/ehr/cdc/dbo/patients/LOAD00000001.csv": cdc_file(patients, full_load=True),
        "raw/ehr/cdc/dbo/patients/20260105-110000000.parquet": cdc_file(changes, parquet=True),
        "raw/ehr/cdc/dbo/encounters/LOAD00000001.parquet": cdc_file(encounters, full_load=True, parquet=True),
        "raw/ehr/cdc/dbo/encounters/20260105-110000000.csv": cdc_file(discharge),
        "raw/ehr/hl7/sample-adt.hl7": hl7_file(adt, "mllp"),
    }


@dataclass(frozen=True, slots=True)
class Adt:
    """One HL7 v2 ADT message (``event`` A01…A40) as a hospital sends it, names and addresses included."""

    control: str
    at: str  # MSH-7, e.g. 20260105101500+0100
    event: str
    patient: str
    visit: str = ""
    patient_class: str = "I"
    attending: str = "DR7"
    admit: str = ""
    discharge: str = ""
    dx: str = ""
    birth: str = "19591231"
    sex: str = "F"
    postal: str = "02139"
    prior: str = ""  # A40: MRG-1, the patient merged into ``patient``
    version: str = "2.5"


def hl7_message(m: Adt) -> str:
    """The message with CR segment separators (``|^~\\&`` separators)."""
    structure = {"A01": "ADT_A01", "A04": "ADT_A01", "A08": "ADT_A01", "A40": "ADT_A39"}.get(m.event, "ADT_A03")
    pv1 = ["PV1", "1", m.patient_class, "W1^101^A", "", "", "", f"{m.attending}^Zyxwvut^Qwertyuiop"]
    pv1 += [""] * 11 + [f"{m.visit}^^^HOSP^VN"] + [""] * 24 + [m.admit, m.discharge]
    segments = [
        f"MSH|^~\\&|ADT|HOSP|EHR|HOSP|{m.at}||ADT^{m.event}^{structure}|{m.control}|P|{m.version}",
        f"EVN|{m.event}|{m.at}",
        f"PID|1||{m.patient}^^^HOSP^MR~078-05-1120^^^SSA^SS||Zyxwvut^Qwertyuiop||{m.birth}|{m.sex}|||"
        f"742 Evergreen Terrace^^Springfieldia^MA^{m.postal}||(555)555-0142|||||078-05-1120",
    ]
    if m.prior:
        segments.append(f"MRG|{m.prior}^^^HOSP^MR")
    if m.visit:
        segments.append("|".join(pv1))
    if m.dx:
        segments.append(f"DG1|1||{m.dx}^Diagnosis^I10|||A")
    return "\r".join(segments) + "\r"


def hl7_file(messages: Sequence[Adt], framing: str = "cr") -> bytes:
    """Messages in one file: ``cr`` (standard), ``lf``, ``crlf``, ``mllp`` (VT … FS CR) or ``batch`` (FHS/BHS)."""
    texts = [hl7_message(m) for m in messages]
    if framing == "mllp":
        return b"".join(b"\x0b" + t.encode() + b"\x1c\r" for t in texts)
    if framing == "batch":
        body = "".join(texts)
        return (f"FHS|^~\\&|ADT|HOSP\rBHS|^~\\&|ADT|HOSP\r{body}BTS|{len(texts)}\rFTS|1\r").encode()
    body = "".join(texts)
    return body.replace("\r", {"cr": "\r", "lf": "\n", "crlf": "\r\n"}[framing]).encode()
