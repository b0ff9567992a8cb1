"""The claims of one X12 transaction set (837P/837I/835), filled segment by segment from pyx12's segments, and
turned into ``claims`` / ``remittances`` rows or ``invalid_claim`` rejections (the mapping rules are in
:mod:`workers.formats.x12`). Pure; never raises on bad values (a bad claim becomes a rejection)."""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from pyx12.segment import Segment

from workers.formats.feed import rejection

__all__ = ["DATE", "GUIDES_837", "GUIDE_835", "INVALID_CLAIM", "Interchange", "Transaction"]

INVALID_CLAIM = "invalid_claim"
GUIDES_837 = {"005010X222A1": "837P", "005010X223A2": "837I"}
GUIDE_835 = "005010X221A1"
_CENT = Decimal("0.01")
_MAX_MONEY = Decimal("9999999999.99")
_NPI = re.compile(r"^\d{10}$")
DATE = re.compile(r"^\d{8}$")


_REF = re.compile(r"[A-Z][A-Z0-9]{1,2}(\d{2})(?:-(\d{1,2}))?")
"""A reference designator: segment id, element (2 digits), optional component."""


@functools.cache
def _ref(ref_des: str) -> tuple[int, int]:
    """``"SV101-2"`` -> (element index, component index), both 0-based; anything else is a programming error
    (checked, as pyx12's own ``get_value`` does: a misspelt reference must not read another element)."""
    match = _REF.fullmatch(ref_des)
    if match is None:
        raise ValueError(f"not an X12 reference designator: {ref_des!r}")
    return int(match.group(1)) - 1, int(match.group(2) or 1) - 1


def getter(seg: Segment) -> Callable[[str], str | None]:
    """``get(ref_des)`` for ``seg``: pyx12's parsed elements read by index (its ``get_value`` re-parses the
    reference each call, a third of the reader's time)."""
    elements = seg.elements

    def get(ref_des: str) -> str | None:
        element, component = _ref(ref_des)
        if element >= len(elements):
            return None
        parts = elements[element].elements
        return parts[component].get_value() if component < len(parts) else None

    return get


class _BadClaim(ValueError):
    """A claim value that cannot be loaded; the message names the element, never its value."""


def _money(value: str | None, element: str, *, required: bool = False) -> Decimal | None:
    if not value:
        if required:
            raise _BadClaim(f"{element}: required amount is missing")
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise _BadClaim(f"{element}: not a decimal amount") from None
    if not amount.is_finite() or amount != amount.quantize(_CENT) or abs(amount) > _MAX_MONEY:
        raise _BadClaim(f"{element}: not an amount with up to 10 digits and 2 decimals")
    return amount.quantize(_CENT)


def _date(value: str | None, element: str) -> date | None:
    """A D8 date (``CCYYMMDD``) or the first date of an RD8 range."""
    if not value:
        return None
    first = value.partition("-")[0]
    if not DATE.match(first):
        raise _BadClaim(f"{element}: not a CCYYMMDD date")
    try:
        return date(int(first[:4]), int(first[4:6]), int(first[6:]))
    except ValueError:
        raise _BadClaim(f"{element}: not a calendar date") from None


def _text(value: str | None, element: str, limit: int, *, required: bool = False) -> str | None:
    if not value:
        if required:
            raise _BadClaim(f"{element}: required value is missing")
        return None
    if len(value.encode()) > limit:
        raise _BadClaim(f"{element}: longer than {limit} bytes")
    return value


@dataclass(slots=True)
class _Line:
    position: int
    number: str | None = None
    procedure: str | None = None
    billed: str | None = None
    dx_pointer: str | None = None
    service_date: str | None = None
    paid: str | None = None
    allowed: str | None = None
    adjustment: str | None = None
    control: str | None = None


@dataclass(slots=True)
class _Claim:
    position: int
    claim_id: str | None
    patient_id: str | None = None
    billing_npi: str | None = None
    rendering_npi: str | None = None
    status: str | None = None
    service_date: str | None = None
    diagnoses: list[str] = field(default_factory=list)
    adjustment: str | None = None
    lines: list[_Line] = field(default_factory=list)
    error: str | None = None


@dataclass(slots=True)
class Interchange:
    """One ISA..IEA: its envelope errors and the rows it holds until released (``ordinal``: its position in
    the file, 1-based; ``spilled``: rows of it were released before its IEA)."""

    control: str
    errors: list[str] = field(default_factory=list)
    version_ok: bool = True
    claims: list[dict[str, Any]] = field(default_factory=list)
    remits: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, object]] = field(default_factory=list)
    ordinal: int = 0
    spilled: bool = False

    def held(self, transaction: Transaction | None) -> int:
        """Rows held for this interchange, counting the finished claims of its open transaction set."""
        pending = transaction.pending if transaction is not None else 0
        return len(self.claims) + len(self.remits) + len(self.rejected) + pending


class Transaction:
    """The claims of one ST..SE, filled segment by segment."""

    def __init__(self, kind: str, remit_prefix: str) -> None:
        self.kind = kind  # "837P", "837I", "835" or "" (unsupported: segments are skipped)
        self.remit_prefix = remit_prefix
        self.hl_level: str | None = None  # pragma: no mutate (before the first HL: any value but 20/22/23 is the same)
        self.billing_npi: str | None = None
        self.member_ids: dict[str | None, str | None] = {}
        """NM109 by NM101 in the current HL loops: ``IL`` the subscriber (2010BA), ``QC`` the patient (2010CA)."""
        self.remit_date: str | None = None
        self.claim: _Claim | None = None
        self.line: _Line | None = None  # pragma: no mutate (every claim starts with close_claim, which sets it)
        self.done: list[_Claim] = []
        self.errors: list[str] = []
        self.pending = 0
        """Rows the finished claims in ``done`` will give (at least one each)."""
        self.released = False
        """Claims of this set were turned into rows before its SE (:meth:`release`)."""

    def close_claim(self) -> None:
        if self.claim is not None:
            self.done.append(self.claim)
            self.pending += max(1, len(self.claim.lines))
        self.claim, self.line = None, None

    def segment(self, seg: Segment, position: int) -> None:
        sid = seg.get_seg_id()
        if self.kind == "835":
            self._remit(sid, seg, position)
        elif self.kind:
            self._claim(sid, seg, position)

    def _claim(self, sid: str | None, seg: Segment, position: int) -> None:
        value = getter(seg)
        if sid == "HL":
            self.close_claim()
            self.hl_level = value("HL03")
            if self.hl_level == "20":
                self.billing_npi = None
            if self.hl_level in ("20", "22"):
                self.member_ids.pop("IL", None)
            self.member_ids.pop("QC", None)
        elif sid == "NM1" and self.claim is None:
            entity = value("NM101")
            if entity == "85" and value("NM108") == "XX":
                self.billing_npi = value("NM109")
            elif entity in ("IL", "QC"):
                self.member_ids[entity] = value("NM109")
        elif sid == "CLM":
            self.close_claim()
            patient = self.member_ids.get("QC") if self.hl_level == "23" else None
            self.claim = _Claim(position, value("CLM01"), patient or self.member_ids.get("IL"), self.billing_npi)
        elif self.claim is None:
            return
        elif sid == "NM1" and self.line is None and value("NM101") == "82" and value("NM108") == "XX":
            self.claim.rendering_npi = value("NM109")
        elif sid == "HI" and not self.claim.diagnoses:
            codes = [value(f"HI{index:02d}-2") or "" for index in range(1, 13)]  # up to 12, to the first empty
            self.claim.diagnoses = list(itertools.takewhile(bool, codes))
        elif sid == "DTP" and value("DTP01") in ("472", "434"):
            target = self.line if self.line is not None else self.claim
            if target.service_date is None or value("DTP01") == "472":
                target.service_date = value("DTP03")
        elif sid == "LX":
            self.line = _Line(position, number=value("LX01"))
            self.claim.lines.append(self.line)
        elif sid == "SV1" and self.line is not None:
            self.line.procedure = value("SV101-2")
            self.line.billed = value("SV102")
            self.line.dx_pointer = value("SV107-1")
        elif sid == "SV2" and self.line is not None:
            self.line.procedure = value("SV202-2") or value("SV201")
            self.line.billed = value("SV203")

    def _remit(self, sid: str | None, seg: Segment, position: int) -> None:
        value = getter(seg)
        if sid == "BPR":
            self.remit_date = value("BPR16") or self.remit_date
        elif sid == "DTM" and value("DTM01") == "405" and self.remit_date is None:
            self.remit_date = value("DTM02")
        elif sid in ("LX", "PLB"):
            self.close_claim()
        elif sid == "CLP":
            self.close_claim()
            self.claim = _Claim(position, value("CLP01"), status=value("CLP02"))
        elif self.claim is None:
            return
        elif sid == "SVC":
            self.line = _Line(position, billed=value("SVC02"), paid=value("SVC03"))
            self.claim.lines.append(self.line)
        elif sid == "CAS":
            code = f"{value('CAS01') or ''}-{value('CAS02') or ''}"
            if self.line is not None:
                self.line.adjustment = self.line.adjustment or code
            else:
                self.claim.adjustment = self.claim.adjustment or code
        elif sid == "REF" and value("REF01") == "6R" and self.line is not None:
            self.line.control = value("REF02")
        elif sid == "AMT" and value("AMT01") == "B6" and self.line is not None:
            self.line.allowed = value("AMT02")

    def rows(self, out: Interchange, isa13: str) -> None:
        """At SE: append this transaction's claim rows or rejections to ``out``."""
        self.close_claim()
        self._emit(out, isa13)

    def release(self, out: Interchange, isa13: str) -> None:
        """Before SE: append the rows of the claims finished so far to ``out`` (the open claim stays); an error
        outside a claim found after this can no longer reject them (the caller fails the interchange)."""
        self._emit(out, isa13)
        self.released = True

    def _emit(self, out: Interchange, isa13: str) -> None:
        if self.kind == "835" and self.remit_date and DATE.match(self.remit_date):
            self.remit_prefix = self.remit_date  # BPR16 / DTM*405: in the header, before any claim
        done, self.done, self.pending = self.done, [], 0
        for claim in done:
            try:
                if claim.error or self.errors:
                    raise _BadClaim(claim.error or self.errors[0])
                if self.kind == "835":
                    out.remits += self._remit_rows(claim, isa13)
                else:
                    out.claims += self._claim_rows(claim)
            except _BadClaim as exc:
                out.rejected.append(rejection(claim.position, INVALID_CLAIM, f"{self.kind} claim: {exc}",
                                              _record_id(claim.claim_id)))  # fmt: skip

    def _claim_rows(self, claim: _Claim) -> list[dict[str, Any]]:
        claim_id = _text(claim.claim_id, "CLM01", 64, required=True)
        patient_id = _text(claim.patient_id, "NM109 member id", 64, required=True)
        npi = claim.rendering_npi or claim.billing_npi
        if npi is not None and not _NPI.match(npi):
            raise _BadClaim("NM109 NPI: not 10 digits")
        if not claim.lines:
            raise _BadClaim("2400: no service line")
        rows: list[dict[str, Any]] = []
        for line in claim.lines:
            number = _count(line.number)
            if number is None:
                raise _BadClaim(f"LX01 at segment {line.position}: not a positive integer")
            served = _date(line.service_date or claim.service_date, "DTP*472 service date")
            if served is None:
                raise _BadClaim(f"DTP*472 at line {number}: service date is missing")
            dx = claim.diagnoses[0] if claim.diagnoses else None
            pointer = _count(line.dx_pointer)
            if pointer is not None and pointer <= len(claim.diagnoses):
                dx = claim.diagnoses[pointer - 1]
            rows.append(
                {
                    "claim_id": claim_id,
                    "line_number": number,
                    "patient_id": patient_id,
                    "provider_npi": npi,
                    "service_date": served,
                    "procedure_code": _text(line.procedure, "procedure code", 16),
                    "dx_code": _text(dx, "HI diagnosis code", 16),
                    "billed_amount": _money(line.billed, "line charge", required=True),
                    "allowed_amount": None,
                    "paid_amount": None,
                    "status": "pending",
                    "denial_reason": None,
                    "source_line": line.position,
                }
            )
        return rows

    def _remit_rows(self, claim: _Claim, isa13: str) -> list[dict[str, Any]]:
        claim_id = _text(claim.claim_id, "CLP01", 64, required=True)
        status_code = claim.status
        if status_code is None or not status_code.isdecimal():
            raise _BadClaim("CLP02: not a claim status code")
        reversal = status_code == "22"
        lines = claim.lines or [_Line(claim.position, paid="0" if status_code == "4" else None)]
        rows: list[dict[str, Any]] = []
        for index, line in enumerate(lines, start=1):
            number = _count(line.control) or (index if claim.lines else 0)
            paid = _money(line.paid, "SVC03 paid amount")
            allowed = _money(line.allowed, "AMT*B6 allowed amount")
            if claim.lines:
                _money(line.billed, "SVC02 charge", required=True)
            denied = status_code == "4" or (paid is not None and paid == 0)
            status = "pending" if reversal else "denied" if denied else "paid"
            reason = (line.adjustment or claim.adjustment) if status == "denied" else None
            rows.append(
                {
                    "claim_id": claim_id,
                    "line_number": number,
                    "status": status,
                    "allowed_amount": None if reversal else allowed,
                    "paid_amount": None if reversal else paid,
                    "denial_reason": _text(reason, "CAS group-reason", 256),
                    "remit_order": f"{self.remit_prefix}:{isa13:>9}:{line.position:012d}",
                    "source_line": line.position,
                }
            )
        return rows


def _count(text: str | None) -> int | None:
    """``text`` as an integer from 1 to 999,999,999, else None. ``isdecimal``, not ``isdigit``: the file is
    read as Latin-1, whose superscripts ``¹²³`` are digits that ``int`` refuses."""
    if not text or not text.isdecimal():
        return None
    number = int(text)
    return number if 0 < number < 1_000_000_000 else None


def _record_id(claim_id: str | None) -> str | None:
    return claim_id[:64] if claim_id else None
