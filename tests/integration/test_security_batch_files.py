"""Hostile batch files through the real ``ehr`` and ``claims`` file handlers (moto S3, the private PostgreSQL).

Each file is its own batch (as the S3-events source makes them), read in 64 KiB pieces and parsed in 64 KiB
blocks so that every fault also crosses chunk and block boundaries. Every file gets its documented answer
(SECURITY.md, "Batch files"): a reason per bad line in ``batch_quarantine``, or the whole file quarantined with a
specific reason; the handler never raises, every file commits its ``load_audit`` row, the good rows of a file
with bad lines are loaded, and a good file after them all still loads. (Truncated gzip and zip bombs:
``test_claims_pipeline.py::test_gzip_faults_quarantine_the_file_whole``; a Latin-1 byte found mid-file:
``test_a_fault_found_mid_file_quarantines_the_whole_file_and_nothing_else_of_it``.)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import orjson
import pytest

from common.logging import JsonFormatter
from loadtest.files import PHI_MARKERS, Adt, Claim, cdc_file, hl7_file, x12_837
from tests.conftest import Resources
from tests.helpers.batch import CLAIMS_HEADER, PATIENTS_HEADER, claim, csv_bytes, fetch, object_batch
from vitalstream.devstack.clients import AwsClients
from workers.formats import common
from workers.pipelines import claims, ehr
from workers.pipelines.files import FileBatchHandler, FileSettings, StreamParser
from workers.sinks.files_s3 import LakeWriter
from workers.warehouse.postgres.files import PostgresBatchLoader

pytestmark = pytest.mark.integration

PIECE = 64 * 1024
NAMES = (*PHI_MARKERS, "Privatesson")
H = ",".join(PATIENTS_HEADER)


def _row(pid: str, birth: str = "1980-01-01", name: str = "Zyxwvut") -> str:
    return f"{pid},{name},Qwertyuiop,{birth},female,02139,742 Evergreen Terrace"


def _csv(*lines: str, end: str = "\r\n") -> bytes:
    return (end.join((H, *lines)) + end).encode()


def _patient(pid: str, **over: object) -> bytes:
    doc = {
        "resourceType": "Patient",
        "id": pid,
        "birthDate": "1980-01-01",
        "gender": "female",
        "name": [{"family": "Zyxwvut", "given": ["Qwertyuiop"]}],
        "telecom": [{"value": "555-0142"}],
        "address": [{"line": ["742 Evergreen Terrace"], "city": "Springfieldia", "postalCode": "02139"}],
    }
    return orjson.dumps(doc | over)


def _change(pid: str) -> dict[str, object]:
    """A DMS CDC insert of a patient (names and street included, as the source table has them)."""
    return {
        "Op": "I",
        "dms_commit_ts": "2026-01-05 10:00:00",
        "patient_id": pid,
        "family_name": "Zyxwvut",
        "given_name": "Qwertyuiop",
        "birth_date": "1959-12-31",
        "sex": "female",
        "postal_code": "02139",
        "street_address": "742 Evergreen Terrace",
    }


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@dataclass(frozen=True)
class Case:
    """A hostile file: its key and bytes; what must load (ids, all ``<prefix>-…``) and what must be quarantined
    (line, reason)."""

    key: str
    data: bytes
    loaded: frozenset[str]
    quarantined: tuple[tuple[int | None, str], ...] = ()

    @property
    def prefix(self) -> str:
        return self.key.rsplit("/", 1)[-1].split(".")[0]


def _case(key: str, data: bytes, loaded: tuple[str, ...] = (), *quarantined: tuple[int | None, str]) -> Case:
    return Case(key, data, frozenset(loaded), tuple(sorted(quarantined, key=lambda q: (q[0] or 0, q[1]))))


WIDE = 1_000_000
ENCOUNTER_ODD_SHAPES = orjson.dumps(
    {
        "resourceType": "Encounter",
        "id": "shapes-E1",
        "subject": {"reference": "Patient/shapes-1"},
        "participant": 5,
        "diagnosis": 7,
        "contained": 3,
        "reasonCode": 9,
        "reasonReference": "x",
        "class": {"code": "IMP"},
        "period": {"start": "2026-01-01T08:00:00Z"},
    }
)
ENCOUNTER_DEEP = (
    b'{"resourceType":"Encounter","id":"deep-E1","subject":{"reference":"Patient/deep-1"},'
    b'"period":{"start":"2026-01-01T08:00:00Z"},"diagnosis":[{"condition":' + _nested(1015) + b"}]}"
)

EHR_CASES = {
    # RFC 4180 CSV (patients): quoting, encodings, line ends, width, blank lines, trailing garbage, NUL
    "csv_embedded_newlines": _case(
        "raw/ehr/patients/nl.csv",
        _csv(
            'nl-1,"Zyx\nwvut",Q,1980-01-01,female,02139,"742 Ever\r\ngreen"', _row("nl-2", "1980-02-30"), _row("nl-3")
        ),
        ("nl-1", "nl-3"),
        (5, "invalid_date"),
    ),
    "csv_doubled_quotes": _case(
        "raw/ehr/patients/dq.csv",
        _csv('dq-1,"Zy""xw""vut",Q,1980-01-01,female,02139,"742 ""Evergreen"""', '"dq-2",Q,Q,,,,'),
        ("dq-1", "dq-2"),
    ),
    "csv_unbalanced_quote": _case(  # the open quote runs to the end of the file: one record, 2 lines
        "raw/ehr/patients/uq.csv",
        _csv(_row("uq-1"), 'uq-2,"Zyxwvut,Q,,,,', _row("uq-3")),
        ("uq-1",),
        (3, "malformed_row"),
    ),
    "csv_bom": _case("raw/ehr/patients/bom.csv", b"\xef\xbb\xbf" + _csv(_row("bom-1")), ("bom-1",)),
    "csv_latin1": _case(
        "raw/ehr/patients/latin1.csv",
        (H + "\r\n" + _row("latin1-1") + "\r\n" + _row("latin1-2", name="M\xfcller") + "\r\n").encode("latin-1"),
        (),
        (None, "not_utf8"),
    ),
    "csv_crlf": _case("raw/ehr/patients/crlf.csv", _csv(_row("crlf-1"), _row("crlf-2")), ("crlf-1", "crlf-2")),
    "csv_lf": _case("raw/ehr/patients/lf.csv", _csv(_row("lf-1"), _row("lf-2"), end="\n"), ("lf-1", "lf-2")),
    "csv_cr_only": _case("raw/ehr/patients/cr.csv", _csv(_row("cr-1"), end="\r"), (), (None, "unreadable")),
    "csv_million_column_header": _case(
        "raw/ehr/patients/wide.csv",
        b",".join(b"c%d" % i for i in range(WIDE)) + b"\r\nwide-1\r\n",
        (),
        (None, "bad_header"),
    ),
    "csv_million_field_row": _case(
        "raw/ehr/patients/widerow.csv",
        _csv(_row("widerow-1")) + b"widerow-2" + b",x" * WIDE + b"\r\n" + _row("widerow-3").encode() + b"\r\n",
        ("widerow-1", "widerow-3"),
        (3, "malformed_row"),
    ),
    "csv_blank_lines_and_trailing_garbage": _case(
        "raw/ehr/patients/blank.csv",
        _csv("", _row("blank-1"), "", " \t ", ",,,,,,", _row("blank-2"), "")[:-2] + b"\x00\x00 trailing Zyxwvut",
        ("blank-1", "blank-2"),
        (8, "malformed_row"),
    ),
    "csv_nul": _case(
        "raw/ehr/patients/nul.csv",
        _csv(_row("nul-1"), _row("nul-\x002"), _row("nul-3", name="Zy\x00x")),
        ("nul-1", "nul-3"),
        (3, "malformed_row"),
    ),
    # FHIR R4 NDJSON
    "fhir_wrong_resource_types": _case(
        "raw/ehr/fhir/types.ndjson",
        b"\n".join(
            [
                _patient("types-1"),
                b'{"resourceType":"Observation","id":"o1"}',
                b'{"resourceType":"Privatesson"}',
                b'{"resourceType":42}',
                b'{"id":"types-x"}',
                _patient("types-2"),
            ]
        ),
        ("types-1", "types-2"),
        (4, "malformed_row"),
        (5, "malformed_row"),
    ),
    "fhir_json_array": _case(
        "raw/ehr/fhir/array.ndjson",
        b"[" + _patient("array-1") + b"," + _patient("array-2") + b"]",
        (),
        (None, "unreadable"),
    ),
    "fhir_non_object_lines": _case(
        "raw/ehr/fhir/lines.ndjson",
        b"\n".join(
            [_patient("lines-1"), b"42", b'"Zyxwvut"', b"null", b"[1,2]", b"Zyxwvut {", b"", _patient("lines-2")]
        ),
        ("lines-1", "lines-2"),
        *[(line, "malformed_row") for line in (2, 3, 4, 5, 6)],
    ),
    "fhir_deep_nesting": _case(
        "raw/ehr/fhir/deep.ndjson",
        b"\n".join(
            [
                _patient("deep-1")[:-1] + b',"extension":' + _nested(1000) + b"}",
                b'{"resourceType":"Patient","id":"deep-x","extension":' + _nested(5000) + b"}",
                ENCOUNTER_DEEP,
                _patient("deep-2"),
            ]
        ),
        ("deep-1", "deep-2"),
        (2, "malformed_row"),  # past orjson's 1,024 levels: not valid JSON
        (3, "malformed_row"),  # within them, but deeper than the mapper's stack
    ),
    "fhir_odd_element_types": _case(
        "raw/ehr/fhir/shapes.ndjson",
        b"\n".join(
            [
                _patient("shapes-1"),
                ENCOUNTER_ODD_SHAPES,
                _patient("shapes-2", birthDate=19800101, address="x"),
                _patient("shapes-3", gender=["female"]),
            ]
        ),
        ("shapes-1", "shapes-E1"),
        (3, "malformed_row"),
        (4, "malformed_row"),
    ),
    "fhir_invalid_utf8": _case(
        "raw/ehr/fhir/utf8.ndjson",
        _patient("utf8-1")
        + b"\n"
        + _patient("utf8-2", text="M\xfcller").replace("M\xfcller".encode(), b"M\xfcller")
        + b"\n",
        (),
        (None, "not_utf8"),
    ),
    "fhir_huge_line": _case(
        "raw/ehr/fhir/huge.ndjson",
        b"\n".join([_patient("huge-1"), _patient("huge-2", text="Zyxwvut " * 60_000), _patient("huge-3")]),
        ("huge-1", "huge-2", "huge-3"),
    ),
    "fhir_line_over_the_limit": _case(  # MAX_LINE_BYTES is lowered to 4 MiB for this test
        "raw/ehr/fhir/toolong.ndjson",
        b"\n".join([_patient("toolong-1"), _patient("toolong-2", text="A" * 5_000_000), _patient("toolong-3")]),
        (),
        (None, "unreadable"),
    ),
    # HL7 v2 ADT
    "hl7_binary": _case("raw/ehr/hl7/binary.hl7", bytes(range(256)) * 64, (), (None, "unreadable")),
    "hl7_cut_short": _case(
        "raw/ehr/hl7/cut.hl7",
        hl7_file([Adt("H1", "20260105101500", "A01", "cut-1", visit="V1")]) + b"MSH|^~\\&|ADT|HO",
        ("cut-1",),
        (5, "invalid_message"),
    ),
    # AWS DMS CDC
    "cdc_parquet_cut_short": _case(
        "raw/ehr/cdc/dbo/patients/20260105-100000000.parquet",
        cdc_file([_change("20260105-100000000-1")], parquet=True)[:-40],
        (),
        (None, "unreadable"),
    ),
    "cdc_csv_quote_left_open": _case(
        "raw/ehr/cdc/dbo/patients/20260105-110000000.csv",
        cdc_file([_change("20260105-110000000-1")]) + b'I,2026-01-05 11:00:00,"20260105-110000000-2,Zyxwvut\n',
        (),
        (None, "unreadable"),
    ),
}

CLAIMS_CASES = {
    "claims_csv_quoted_fields": _case(
        "raw/claims/quoted.csv",
        b"\xef\xbb\xbf"
        + csv_bytes(
            CLAIMS_HEADER, [claim("quoted-1", denial_reason='CO-"50"\nsee letter'), claim("quoted-2", status="Zyxwvut")]
        ),
        ("quoted-1",),
        (4, "invalid_status"),
    ),
    "x12_cut_short": _case("raw/claims/x12/cut.x12", x12_837([Claim("cut-1")])[:700], (), (None, "invalid_envelope")),
    "x12_not_x12": _case("raw/claims/x12/binary.x12", bytes(range(256)) * 8, (), (None, "unreadable")),
    "x12_nul_in_a_claim": _case(
        "raw/claims/x12/nul.x12",
        x12_837([Claim("nul-1"), Claim("nul-\x002")], control=7),
        ("nul-1",),
        (44, "malformed_row"),
    ),
}


@asynccontextmanager
async def _handler(
    resources: Resources, clients: AwsClients, pipeline: str, parser: StreamParser, tables: tuple[str, ...]
) -> AsyncIterator[FileBatchHandler]:
    loader = await PostgresBatchLoader.connect(resources.warehouse_url)
    lake = LakeWriter(clients.s3, resources.names.bucket)
    try:
        yield FileBatchHandler(pipeline, parser, lake, loader, tables, settings=FileSettings(read_bytes=PIECE))
    finally:
        await loader.close()


async def _run_corpus(
    handler: FileBatchHandler, url: str, cases: Mapping[str, Case], ids: str, good: tuple[str, bytes]
) -> dict[str, tuple[frozenset[str], tuple[tuple[int | None, str], ...]]]:
    """Each case as its own batch, then a good file; what each case's file produced."""
    for name, case in cases.items():
        result = await handler.handle(object_batch(handler.pipeline, case.key, case.data, etag=name))
        assert result.rows_in >= result.rows_loaded + result.rows_quarantined, name
    result = await handler.handle(object_batch(handler.pipeline, *good))
    assert (result.rows_loaded, result.rows_quarantined) == (1, 0), "the handler still loads a good file"
    assert len(await fetch(url, "SELECT batch_id FROM load_audit")) == len(cases) + 1, "every file committed"
    loaded = {row["id"] for row in await fetch(url, ids)}
    rows = await fetch(url, "SELECT source_key, line_number, reason, detail FROM batch_quarantine")
    for row in rows:
        assert not any(marker in (row["detail"] or "") for marker in NAMES), row
    outcomes = {}
    for name, case in cases.items():
        mine = frozenset(i for i in loaded if i.startswith(f"{case.prefix}-"))
        quarantined = sorted(
            ((r["line_number"], r["reason"]) for r in rows if r["source_key"] == case.key),
            key=lambda q: (q[0] or 0, q[1]),
        )
        outcomes[name] = (mine, tuple(quarantined))
    return outcomes


def _no_names_in(records: list[logging.LogRecord]) -> None:
    lines = "\n".join(JsonFormatter().format(record) for record in records)
    assert "batch file loaded" in lines
    assert [marker for marker in NAMES if marker in lines] == []


def _expected(cases: Mapping[str, Case]) -> dict[str, tuple[frozenset[str], tuple[tuple[int | None, str], ...]]]:
    return {name: (case.loaded, case.quarantined) for name, case in cases.items()}


async def test_hostile_ehr_files_get_their_documented_answers(
    resources: Resources, clients: AwsClients, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(common, "MAX_LINE_BYTES", 4 * 1024 * 1024)
    caplog.set_level(logging.DEBUG, logger="workers")
    ids = (
        "SELECT patient_id AS id FROM dim_patient UNION SELECT encounter_id FROM fact_encounters "
        "UNION SELECT patient_id FROM adt_event_log"
    )
    async with _handler(resources, clients, "ehr", ehr.ehr_parser(PIECE), ehr.LAKE_TABLES) as handler:
        good = ("raw/ehr/patients/after.csv", _csv(_row("after-1")))
        outcomes = await _run_corpus(handler, resources.warehouse_url, EHR_CASES, ids, good)
    assert outcomes == _expected(EHR_CASES)
    # known FHIR types by name, anything else as "other": a made-up type (here a name) never reaches a log line
    assert {"Observation": 1, "other": 1} in [r.__dict__.get("resources_skipped") for r in caplog.records]
    _no_names_in(caplog.records)


async def test_hostile_claims_files_get_their_documented_answers(
    resources: Resources, clients: AwsClients, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="workers")
    ids = "SELECT claim_id AS id FROM fact_claims"
    async with _handler(resources, clients, "claims", claims.claims_parser(PIECE), claims.LAKE_TABLES) as handler:
        good = ("raw/claims/after.csv", csv_bytes(CLAIMS_HEADER, [claim("after-1")]))
        outcomes = await _run_corpus(handler, resources.warehouse_url, CLAIMS_CASES, ids, good)
    assert outcomes == _expected(CLAIMS_CASES)
    _no_names_in(caplog.records)
