"""Stage: parse FHIR R4 bulk-data NDJSON (one ``Patient`` or ``Encounter`` resource a line, CONTRACT §8).

Mapping (the same rules as the CSV feeds then apply, via ``validate_patients`` / ``validate_encounters``):

=====================  ===========================================================================
column                 FHIR element (first present wins)
=====================  ===========================================================================
patient_id             ``Patient.id``
birth_date             ``Patient.birthDate`` (a full date; partial dates such as ``1970`` are rejected)
sex                    ``Patient.gender``
postal_code            ``Patient.address[0].postalCode``
encounter_id           ``Encounter.id``
patient_id             ``Encounter.subject.reference`` = ``Patient/<id>`` (or a URL ending so)
provider_id            ``Encounter.participant[].individual.reference`` (R4) or ``.actor.reference``
                       (R5), else ``Encounter.serviceProvider.reference``; the ``<id>`` of ``Type/<id>``
encounter_type         ``Encounter.class.code`` (R4 Coding) or ``class[0].coding[0].code`` (R5)
admit_at, discharge_at ``Encounter.period.start`` / ``.end`` (R5: ``actualPeriod``), RFC 3339 with offset
primary_dx             ``Encounter.reasonCode[0].coding[0].code``, else the code of the contained
                       ``Condition`` referenced (``#id``) by the lowest-``rank`` ``Encounter.diagnosis``
=====================  ===========================================================================

Names, addresses other than the postal code, telecom, identifiers and every other element are never read.
``line_number`` is the 1-based line of the resource. Resources of other types are skipped and counted by type
(``skipped``; a type that is not a FHIR R4/R5 resource type is counted as ``other``, so a name never reaches a
log); a line that is not a JSON object, or whose elements have JSON types FHIR does not allow there, is
``malformed_row``; a file that is not UTF-8 or whose non-blank lines are none of them JSON objects is rejected
whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from schemas.arrow import ENCOUNTERS, PATIENTS
from workers.formats import encounters as encounter_csv
from workers.formats import patients as patient_csv
from workers.formats.codes import ICD10_CM
from workers.formats.common import (
    DEFAULT_BLOCK_BYTES,
    INVALID_DX_CODE,
    INVALID_REFERENCE,
    MALFORMED_ROW,
    MAX_LINE_BYTES,
    NOT_UTF8,
    REJECTED,
    UNREADABLE,
    LineTooLongError,
    ParseResult,
    RowChecks,
    blank_to_null,
    decode_utf8,
    line_blocks,
    with_source_line,
)
from workers.formats.fhir_refs import RESOURCE_TYPES, code_of, is_icd10, items, resolve

__all__ = ["FhirParseResult", "parse_fhir", "parse_fhir_stream"]

PATIENT_LABELS = {
    "patient_id": "Patient.id",
    "birth_date": "Patient.birthDate",
    "sex": "Patient.gender",
    "postal_code": "Patient.address[0].postalCode",
}
_SHAPE_DETAIL = "resource: an element is shaped as FHIR does not allow (JSON type or nesting)"
ENCOUNTER_LABELS = {
    "encounter_id": "Encounter.id",
    "patient_id": "Encounter.subject.reference",
    "provider_id": "Encounter.participant.individual.reference",
    "encounter_type": "Encounter.class.code",
    "admit_at": "Encounter.period.start",
    "discharge_at": "Encounter.period.end",
    "primary_dx": "Encounter.reasonCode.coding.code",
}


@dataclass(frozen=True, slots=True)
class FhirParseResult:
    """Good ``PATIENTS`` and ``ENCOUNTERS`` rows (+ ``source_line``), rejected lines, in-file duplicates."""

    patients: pa.Table
    encounters: pa.Table
    rejected: pa.Table
    duplicates: int = 0
    skipped: Mapping[str, int] = field(default_factory=dict)
    """Resources of other types, counted by ``resourceType`` (not quarantined: an export has dozens of types)."""

    @property
    def rows_in(self) -> int:
        return int(self.patients.num_rows + self.encounters.num_rows + self.rejected.num_rows + self.duplicates)

    @property
    def file_rejected(self) -> bool:
        return bool(self.rejected.num_rows == 1 and self.rejected.column("line_number").null_count == 1)


class _Rows:
    """Column-wise accumulator of one resource type's mapped string values."""

    def __init__(self, columns: tuple[str, ...]) -> None:
        self.values: dict[str, list[str | None]] = {c: [] for c in columns}
        self.lines: list[int] = []
        self.failures: list[tuple[int, str, str]] = []  # (row index, reason, detail)

    def add(self, line: int, mapped: dict[str, str | None], failures: list[tuple[str, str]]) -> None:
        index = len(self.lines)
        self.lines.append(line)
        for column, values in self.values.items():
            values.append(mapped.get(column))
        self.failures.extend((index, reason, detail) for reason, detail in failures)

    def validate(self, validate: Callable[..., ParseResult], labels: dict[str, str]) -> ParseResult:
        n = len(self.lines)
        checks = RowChecks(n)
        for reason, detail in sorted({(r, d) for _, r, d in self.failures}):
            mask = np.zeros(n, dtype=bool)
            mask[[i for i, r, d in self.failures if (r, d) == (reason, detail)]] = True
            checks.add(pa.array(mask), reason, detail)
        typed = {c: pa.array(v, pa.string()) for c, v in self.values.items()}  # pragma: no mutate (cast later)
        columns = {c: blank_to_null(v) for c, v in typed.items()}
        return validate(columns, pa.array(self.lines, pa.int64()), checks, labels)  # pragma: no mutate (int64 inferred)


def parse_fhir(data: bytes) -> FhirParseResult:
    """Map and validate every line of a whole file; see the module docstring for the mapping."""
    # One block: any size of at least len(data) gives it (the default differs only past DEFAULT_BLOCK_BYTES).
    parts = list(parse_fhir_stream([data], block_size=max(len(data) + 1, 1 << 20)))  # pragma: no mutate (see above)
    if not parts:
        return _empty(REJECTED.empty_table())
    if len(parts) == 1:
        return parts[0]
    return parts[-1] if parts[-1].file_rejected else _empty(REJECTED.empty_table())  # pragma: no cover, no mutate


def parse_fhir_stream(chunks: Iterable[bytes], *, block_size: int = DEFAULT_BLOCK_BYTES) -> Iterator[FhirParseResult]:
    """Map and validate a file block by block (about ``block_size`` bytes of whole lines each; bounded memory).

    A whole-file rejection (not UTF-8, a line longer than :data:`MAX_LINE_BYTES`, or a first block of which
    no line is a JSON object) is yielded last, possibly after earlier blocks: the caller discards those.
    Duplicates are resolved within a block only.
    """
    first_block = True
    try:
        for first_line, lines in line_blocks(chunks, block_size):
            block = b"\n".join(lines)  # pragma: no mutate (only its UTF-8 validity is read)
            if decode_utf8(block) is None:
                yield _reject_file(NOT_UTF8, "file: not valid UTF-8")
                return
            result, has_object, bad = _parse_block(lines, first_line)
            if first_block and bad and not has_object:
                yield _reject_file(UNREADABLE, "file: not FHIR NDJSON (no line is a JSON object)")
                return
            first_block = first_block and not (has_object or bad)
            yield result
    except LineTooLongError:
        yield _reject_file(UNREADABLE, f"file: a line is longer than {MAX_LINE_BYTES} bytes")


def _parse_block(lines: list[bytes], first_line: int) -> tuple[FhirParseResult, bool, int]:
    patients = _Rows(patient_csv.KEPT)
    encounters = _Rows(encounter_csv.HEADER)
    bad: list[tuple[int, str, str]] = []
    skipped: dict[str, int] = {}
    has_object = False  # pragma: no mutate (None is falsy like False)
    for number, raw in enumerate(lines, start=first_line):
        if not raw.strip():
            continue
        try:
            resource = orjson.loads(raw)
        except orjson.JSONDecodeError:
            bad.append((number, MALFORMED_ROW, "line: not valid JSON"))
            continue
        if not isinstance(resource, dict):
            bad.append((number, MALFORMED_ROW, "line: not a JSON object"))
            continue
        has_object = True
        kind = resource.get("resourceType")
        try:
            if kind == "Patient":
                patients.add(number, *_map_patient(resource))
            elif kind == "Encounter":
                encounters.add(number, *_map_encounter(resource))
            elif isinstance(kind, str) and kind:
                label = kind if kind in RESOURCE_TYPES else "other"  # counted in logs: never a made-up name
                skipped[label] = skipped.get(label, 0) + 1
            else:
                bad.append((number, MALFORMED_ROW, "resourceType: missing or not a string"))
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError):
            # an element shaped as FHIR does not allow (a number where a list goes, nesting past the stack):
            # this line only, the rest of the file loads
            bad.append((number, MALFORMED_ROW, _SHAPE_DETAIL))
    p = patients.validate(patient_csv.validate_patients, PATIENT_LABELS)
    e = encounters.validate(encounter_csv.validate_encounters, ENCOUNTER_LABELS)
    own = pa.Table.from_pylist([{"line_number": n, "reason": r, "detail": d} for n, r, d in bad], schema=REJECTED)
    rejected = pa.concat_tables([own, p.rejected, e.rejected]).sort_by("line_number")
    return FhirParseResult(p.good, e.good, rejected, p.duplicates + e.duplicates, skipped), has_object, len(bad)


def _reject_file(reason: str, detail: str) -> FhirParseResult:
    rejected = pa.Table.from_pylist([{"reason": reason, "detail": detail}], schema=REJECTED)
    return _empty(rejected)


def _empty(rejected: pa.Table) -> FhirParseResult:
    return FhirParseResult(
        with_source_line(PATIENTS).empty_table(), with_source_line(ENCOUNTERS).empty_table(), rejected
    )


def _get(node: Any, *path: str | int) -> Any:
    for step in path:
        if isinstance(step, int):
            node = node[step] if isinstance(node, list) and len(node) > step else None
        else:
            node = node.get(step) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


def _text(value: Any, label: str, failures: list[tuple[str, str]]) -> str | None:
    if value is None or isinstance(value, str):
        return value
    failures.append((MALFORMED_ROW, f"{label}: not a string"))
    return None


def _map_patient(resource: dict[str, Any]) -> tuple[dict[str, str | None], list[tuple[str, str]]]:
    failures: list[tuple[str, str]] = []
    mapped = {
        "patient_id": _text(resource.get("id"), PATIENT_LABELS["patient_id"], failures),
        "birth_date": _text(resource.get("birthDate"), PATIENT_LABELS["birth_date"], failures),
        "sex": _text(resource.get("gender"), PATIENT_LABELS["sex"], failures),
        "postal_code": _text(_get(resource, "address", 0, "postalCode"), PATIENT_LABELS["postal_code"], failures),
    }
    return mapped, failures


def _contained(resource: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        c["id"]: c for c in items(resource.get("contained")) if isinstance(c, dict) and isinstance(c.get("id"), str)
    }


def _subject(
    resource: dict[str, Any], contained: dict[str, dict[str, Any]], failures: list[tuple[str, str]]
) -> str | None:
    subject = resource.get("subject")
    if subject is None or (isinstance(subject, dict) and not (subject.get("reference") or subject.get("identifier"))):
        return None
    patient = resolve(subject, ("Patient",), contained)
    if patient is None:
        failures.append((INVALID_REFERENCE, f"{ENCOUNTER_LABELS['patient_id']}: not a reference to a Patient"))
    return patient


def _provider(resource: dict[str, Any], contained: dict[str, dict[str, Any]]) -> str | None:
    """The first participant that is a Practitioner (R4 ``individual``, R5 ``actor``), else the
    ``serviceProvider`` organisation."""
    for participant in items(resource.get("participant")):
        if not isinstance(participant, dict):
            continue
        for role in ("individual", "actor"):
            found = resolve(participant.get(role), ("Practitioner",), contained)
            if found is not None:
                return found
    return resolve(resource.get("serviceProvider"), ("Organization",), contained)


def _encounter_type(resource: dict[str, Any]) -> Any:
    """R4 ``class`` (a Coding), R5 ``class`` (a list of CodeableConcept, or one)."""
    klass = resource.get("class")
    if isinstance(klass, list):
        klass = klass[0] if klass else None
    if isinstance(klass, dict) and "coding" in klass:
        return code_of(klass)[0]
    return _get(klass, "code")


def _primary_dx(
    resource: dict[str, Any], contained: dict[str, dict[str, Any]], failures: list[tuple[str, str]]
) -> str | None:
    """The code of the best-ranked diagnosis (R4 ``condition`` reference to a contained Condition, R5
    ``condition`` CodeableReference), else ``reasonCode``, else ``reasonReference`` (contained), else R5
    ``reason.value``. An ICD-10 code (by its system) must have the ICD-10-CM shape."""
    code, system = None, None
    diagnoses = sorted((d for d in items(resource.get("diagnosis")) if isinstance(d, dict)), key=_rank)
    for diagnosis in diagnoses:
        code, system = _condition_code(diagnosis.get("condition"), contained)
        if code is not None:
            break
    if code is None:
        for concept in items(resource.get("reasonCode")):
            code, system = code_of(concept)
            if code is not None:
                break
    if code is None:
        for reference in items(resource.get("reasonReference")):
            code, system = _condition_code(reference, contained)
            if code is not None:
                break
    if code is None:
        for reason in items(resource.get("reason")):
            code, system = _condition_code(_get(reason, "value"), contained)
            if code is not None:
                break
    if code is not None and is_icd10(system) and not ICD10_CM.fullmatch(code):
        failures.append((INVALID_DX_CODE, f"{ENCOUNTER_LABELS['primary_dx']}: not an ICD-10-CM code"))
        return None
    return code


def _condition_code(node: Any, contained: dict[str, dict[str, Any]]) -> tuple[str | None, str | None]:
    """Code of a Condition reference (contained ``#id`` only: other Conditions are not in the file), of a
    CodeableReference (``concept`` or ``reference``), or of a list of either."""
    if isinstance(node, list):
        for item in node:
            found = _condition_code(item, contained)
            if found[0] is not None:
                return found
        return None, None
    if not isinstance(node, dict):
        return None, None
    if "concept" in node:
        found = code_of(node.get("concept"))
        if found[0] is not None:
            return found
    if "reference" in node and isinstance(node.get("reference"), dict):
        node = node["reference"]
    reference = node.get("reference")
    if isinstance(reference, str) and reference.startswith("#"):
        target = contained.get(reference[1:])
        if target is not None and target.get("resourceType") in ("Condition", None):
            return code_of(target.get("code"))
    return None, None


_UNRANKED = 1 << 31  # pragma: no mutate (above positiveInt's maximum 2^31 - 1; any larger value sorts the same)


def _rank(diagnosis: dict[str, Any]) -> int:
    rank = diagnosis.get("rank")
    return rank if isinstance(rank, int) and not isinstance(rank, bool) else _UNRANKED


def _map_encounter(resource: dict[str, Any]) -> tuple[dict[str, str | None], list[tuple[str, str]]]:
    failures: list[tuple[str, str]] = []
    contained = _contained(resource)
    period = resource.get("period") or resource.get("actualPeriod")
    mapped = {
        "encounter_id": _text(resource.get("id"), ENCOUNTER_LABELS["encounter_id"], failures),
        "patient_id": _subject(resource, contained, failures),
        "provider_id": _provider(resource, contained),
        "encounter_type": _text(_encounter_type(resource), ENCOUNTER_LABELS["encounter_type"], failures),
        "admit_at": _text(_get(period, "start"), ENCOUNTER_LABELS["admit_at"], failures),
        "discharge_at": _text(_get(period, "end"), ENCOUNTER_LABELS["discharge_at"], failures),
        "primary_dx": _primary_dx(resource, contained, failures),
    }
    return mapped, failures
