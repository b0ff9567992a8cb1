"""atheris target: the C fast path against the reference per-reading path on arbitrary request bodies.

``python -m fuzz.fastpath_target [libFuzzer options] CORPUS_DIR... `` (``make fuzz`` runs it with the sanitizer
build preloaded). Each input is a request body. The property, for every body:

- ``body_envelope`` (the C body parser) gives an envelope only for a body that ``parse_body`` reads and whose
  readings the reference path (``validate_readings`` + ``build_records``) accepts in full, and then the same
  envelope (compared after orjson re-encoding) and reading count;
- ``columns`` (the C path over orjson's objects) gives an envelope only when the reference accepts every
  reading, and then byte for byte the reference's envelope;
- neither path raises (an exception would be a 500 in the gateway), and the sanitizers see no memory or
  undefined-behaviour error.

A finding is fixed and its input added to ``fuzz/corpus/`` (the committed seed corpus).
"""

from __future__ import annotations

import sys
from typing import Any

import orjson

NOW_US = 1_767_268_800_000_000  # 2026-01-01T12:00:00Z: the seed corpus's readings are from that morning
DEVICE = "dev-1"
PATIENT = "pat-1"
REQUEST_ID = "req-1"


class Disagreement(AssertionError):
    """The fast path answered what the reference path does not."""


def canonical(envelope: bytes) -> bytes:
    """An envelope re-encoded by orjson: equal bytes for equal content (-0.0 and 0.0 told apart)."""
    return orjson.dumps(orjson.loads(envelope))


def check(body: bytes) -> None:
    """The differential property for one body; raises :class:`Disagreement` on a finding."""
    from service.fastpath import fast_body_envelope, fast_envelope
    from service.normalise import build_records
    from service.validate import FUTURE_TOLERANCE_US, BodyError, ForeignDevice, parse_body, validate_readings

    patient = PATIENT if len(body) % 2 else None  # both the registered-patient and the no-patient case
    latest_us = NOW_US + FUTURE_TOLERANCE_US
    from_body = fast_body_envelope(body, DEVICE, patient, REQUEST_ID, NOW_US, latest_us)
    try:
        items = parse_body(body)
    except BodyError:
        if from_body is not None:
            raise Disagreement("body_envelope took a body parse_body refuses") from None
        return
    expected: bytes | None = None
    try:
        valid, rejected = validate_readings(items, DEVICE, NOW_US)
    except ForeignDevice:
        rejected = [None]  # type: ignore[list-item]
        valid = []
    if not rejected:
        records = build_records(REQUEST_ID, NOW_US, valid, patient)
        if len(records) != 1:
            raise Disagreement(f"the reference path built {len(records)} records for one device")
        expected = records[0].data
    if from_body is not None:
        if expected is None:
            raise Disagreement("body_envelope accepted what the reference path does not accept in full")
        if canonical(from_body[0]) != canonical(expected) or from_body[1] != len(items):
            raise Disagreement("body_envelope wrote another envelope than the reference path")
    from_objects = fast_envelope(items, DEVICE, patient, REQUEST_ID, NOW_US, latest_us)
    if from_objects is not None and from_objects != expected:
        raise Disagreement("columns wrote another envelope than the reference path")
    if from_body is not None and from_objects is None:
        raise Disagreement("columns declined what body_envelope accepted")


def test_one_input(data: bytes) -> None:
    check(data)


def main(argv: list[str]) -> None:
    import os
    from pathlib import Path

    import atheris

    from fuzz.sanitized import use_sanitized_build

    use_sanitized_build()
    os.environ["FUZZ_PYTHON"] = sys.executable  # libFuzzer re-executes argv[0] for -merge/-fork/-jobs
    root = str(Path(__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    atheris.Setup([str(Path(__file__).with_name("run_target")), *argv[1:]], test_one_input)
    atheris.Fuzz()


def _entry(argv: list[str] | None = None) -> Any:
    return main(list(sys.argv if argv is None else argv))


if __name__ == "__main__":
    _entry()
