"""Reader: HL7 v2.3-v2.8 ADT messages (CONTRACT §8, ``raw/ehr/hl7/``) -> ``adt_events`` rows (``schemas.feeds``).

Messages are parsed by python-hl7 (``hl7.parse``: separators from MSH-1/MSH-2, escapes, repetitions,
components). This module only finds where messages start and end in the byte stream, which python-hl7 cannot do
on a stream: segments end at CR, LF or CRLF; MLLP framing bytes (VT, FS) are dropped; FHS/BHS/BTS/FTS batch
wrappers are skipped; a message runs from its MSH to the next MSH (or wrapper, or end of file).

One row per usable message (A01, A02, A03, A04, A08, A11, A13, A40):

=================== ========================================================================================
``message_control_id`` MSH-10 (required; the warehouse applies a control id once: re-delivery changes nothing)
``message_ts``      MSH-7 (HL7 DTM; without an offset it is taken as UTC) — the order events apply in
``event``           MSH-9.2 (else EVN-1)
``patient_id``      PID-3.1 of the repetition whose PID-3.5 is ``MR``, else the first repetition
``prior_patient_id`` MRG-1.1 (A40: the patient merged into ``patient_id``)
``encounter_id``    PV1-19.1 (visit number)
``encounter_type``  PV1-2: I inpatient, O outpatient, E emergency, P preadmit, R recurring, B obstetrics
``provider_id``     PV1-7.1 (attending)
``admit_at`` / ``discharge_at`` PV1-44 / PV1-45
``primary_dx``      DG1-3.1 of the first DG1
``birth_date``, ``sex``, ``postal_code`` PID-7 (date part), PID-8 (F female, M male, O other, U unknown, A
                    ambiguous, N not applicable), PID-11.5 reduced by ``safe_harbor_postal_code``
=================== ========================================================================================

Names (PID-5, PID-6, PID-9), street lines (PID-11.1/11.2), phones, SSNs and every other element are never read.
A message that cannot be used (no MSH-10, an unparsable MSH-7, no PID-3, an encounter event without PV1-19, an
event this feed does not handle, a value too long) is rejected alone: ``line_number`` = the line its MSH starts
on, ``record_id`` and the start of ``detail`` = its MSH-10 (``message <MSH-10>: <field>: <problem>``), never
its content. A file with content but not one MSH segment (binary, another format) is rejected whole
(``unreadable``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import hl7
import pyarrow as pa

from schemas.feeds import ADT_EVENTS
from workers.formats.common import REJECTED, UNREADABLE, with_source_line
from workers.formats.feed import FeedChunk, rejection
from workers.formats.values import safe_harbor_postal_code

__all__ = [
    "EVENTS",
    "INVALID_MESSAGE",
    "MAX_MESSAGE_BYTES",
    "MAX_ROWS",
    "UNSUPPORTED_EVENT",
    "read_hl7",
    "split_messages",
]

EVENTS = ("A01", "A02", "A03", "A04", "A08", "A11", "A13", "A40")
ENCOUNTER_EVENTS = ("A01", "A02", "A03", "A04", "A11", "A13")
INVALID_MESSAGE = "invalid_message"
UNSUPPORTED_EVENT = "unsupported_event"
_CLASSES: dict[str | None, str] = {
    "I": "inpatient",
    "O": "outpatient",
    "E": "emergency",
    "P": "preadmit",
    "R": "recurring",
    "B": "obstetrics",
}
_SEXES: dict[str | None, str] = {
    "F": "female",
    "M": "male",
    "O": "other",
    "U": "unknown",
    "A": "ambiguous",
    "N": "not applicable",
}
_WRAPPERS = (b"FHS", b"BHS", b"BTS", b"FTS")
_FILLER = b" \t\r\n\x0b\x1c\x00"  # white space and MLLP framing
_NO_MESSAGE = "file: not HL7 v2 (no MSH segment)"
_DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?([+-]\d{4})?$")
MAX_ROWS = 10_000
"""Messages (rows and rejections) per chunk."""
MAX_MESSAGE_BYTES = 4 << 20
"""A longer message is rejected (``invalid_message``) without being held."""


class _Unusable(ValueError):
    """The message cannot be used; the message names the field, never its value."""


def split_messages(chunks: Iterator[bytes], *, limit: int = MAX_MESSAGE_BYTES) -> Iterator[tuple[int, bytes, bool]]:
    """``(line of the MSH, message bytes with CR-separated segments, complete)`` for each message in the stream.

    A message longer than ``limit`` bytes is not held: it comes out with ``complete`` False and only its MSH
    segment (empty when the MSH itself is too long), its other bytes dropped as they stream, so memory stays
    within ``limit`` plus a chunk whatever the input (even one without a line break)."""
    # pending: the segment not yet ended (without held); held: a CR that ended the last chunk (the LF of its CRLF
    # may start the next one); skipping: inside a segment already over the limit (dropped up to its end);
    # current: the message's segments (too_long: over the limit, only its MSH kept)
    current: list[bytes]
    pending, held, skipping, line, current, too_long = b"", b"", False, 0, [], False
    size = 0  # pragma: no mutate (set by every MSH before it is read)
    start = 0  # pragma: no mutate (set by every MSH before it is read)
    for chunk in _with_end(chunks):
        if chunk is None:
            segments, pending = [pending], b""
        else:
            data = pending + held + chunk.replace(b"\x0b", b"").replace(b"\x1c", b"")
            held = b"\r" if data.endswith(b"\r") else b""
            *segments, pending = re.split(rb"\r\n|\r|\n", data.removesuffix(held))
        if skipping and segments:  # the end of the over-long segment (its message is marked)
            segments, skipping, line = segments[1:], False, line + 1
        for segment in segments:
            line += 1
            if segment.startswith(b"MSH") or segment[:3] in _WRAPPERS:
                if current or too_long:
                    yield start, b"\r".join(current), not too_long
                size, start = len(segment), line
                too_long = segment.startswith(b"MSH") and size > limit  # a wrapper is never a message
                current = [segment] if segment.startswith(b"MSH") and not too_long else []
            elif current and not too_long and segment.strip():
                size += len(segment) + 1
                if size > limit:
                    current, too_long = current[:1], True
                else:
                    current.append(segment)
        if len(pending) > limit:  # a segment with no end in sight: drop it as it comes
            if (pending.startswith(b"MSH") or pending[:3] in _WRAPPERS) and not skipping:
                if current or too_long:  # it ends the message before it
                    yield start, b"\r".join(current), not too_long
                current, too_long, start = [], pending.startswith(b"MSH"), line + 1
            elif current:
                current, too_long = current[:1], True
            skipping = True
            pending = b""  # pragma: no mutate (what follows is skipped up to the segment's end, whatever it holds)
    if current or too_long:
        yield start, b"\r".join(current), not too_long


def _with_end(chunks: Iterator[bytes]) -> Iterator[bytes | None]:
    yield from chunks
    yield None


def _field(message: hl7.Message, path: str) -> str | None:
    try:
        value = str(message[path]).strip()
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return value or None


def _timestamp(value: str | None, label: str) -> dt.datetime | None:
    if value is None:
        return None
    match = _DTM.match(value)
    if not match:
        raise _Unusable(f"{label}: not an HL7 date/time")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        moment = dt.datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                             int(second or 0), int((fraction or ".")[1:].ljust(6, "0")))  # fmt: skip
    except ValueError:
        raise _Unusable(f"{label}: not a calendar date/time") from None
    if offset:
        sign = 1 if offset[0] == "+" else -1
        moment -= sign * dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[3:]))
    return moment.replace(tzinfo=dt.UTC)


def _text(value: str | None, label: str, limit: int) -> str | None:
    if value is not None and len(value.encode()) > limit:
        raise _Unusable(f"{label}: longer than {limit} bytes")
    return value


def _patient_id(message: hl7.Message) -> str | None:
    try:
        repetitions = message.segment("PID")[3]
    except (KeyError, IndexError):
        return None
    # (not an MR, position, id) of each repetition with an id: the least is the first MR, else the first id
    ranked = [(_field(message, f"PID.F3.R{index + 1}.C5") != "MR", index, ident) for index in range(len(repetitions))
              if (ident := _field(message, f"PID.F3.R{index + 1}.C1"))]  # fmt: skip
    return min(ranked)[2] if ranked else None


def _row(message: hl7.Message, control: str) -> dict[str, Any]:
    event = _field(message, "MSH.F9.R1.C2") or _field(message, "EVN.F1")
    if event not in EVENTS:
        raise _Unusable("MSH-9: not an ADT event this feed handles (A01-A04, A08, A11, A13, A40)")
    moment = _timestamp(_field(message, "MSH.F7"), "MSH-7")
    if moment is None:
        raise _Unusable("MSH-7: message date/time is missing")
    patient = _text(_patient_id(message), "PID-3", 64)
    if patient is None:
        raise _Unusable("PID-3: patient identifier is missing")
    encounter = _text(_field(message, "PV1.F19.R1.C1"), "PV1-19", 64)
    if encounter is None and event in ENCOUNTER_EVENTS:
        raise _Unusable("PV1-19: visit number is missing")
    prior = _text(_field(message, "MRG.F1.R1.C1"), "MRG-1", 64)
    if event == "A40" and prior is None:
        raise _Unusable("MRG-1: merged patient identifier is missing")
    birth = _field(message, "PID.F7")
    birth_ts = _timestamp(birth[:8] if birth else None, "PID-7")
    patient_class = _field(message, "PV1.F2")
    sex = _field(message, "PID.F8")
    return {
        "message_control_id": control,
        "message_ts": moment,
        "event": event,
        "patient_id": patient,
        "prior_patient_id": prior,
        "encounter_id": encounter,
        "encounter_type": _text(_CLASSES.get(patient_class, patient_class), "PV1-2", 64),
        "provider_id": _text(_field(message, "PV1.F7.R1.C1"), "PV1-7", 64),
        "admit_at": _timestamp(_field(message, "PV1.F44"), "PV1-44"),
        "discharge_at": _timestamp(_field(message, "PV1.F45"), "PV1-45"),
        "primary_dx": _text(_field(message, "DG1.F3.R1.C1"), "DG1-3", 16),
        "birth_date": birth_ts.date() if birth_ts else None,
        "sex": _text(_SEXES.get(sex, sex), "PID-8", 16),
        "postal_code": _field(message, "PID.F11.R1.C5"),
    }


def read_hl7(
    key: str, chunks: Iterator[bytes], *, max_rows: int = MAX_ROWS, max_message_bytes: int = MAX_MESSAGE_BYTES
) -> Iterator[FeedChunk]:
    """Stream an HL7 v2 file: ``adt_events`` rows and rejections, one chunk per ``max_rows`` messages.

    Memory is bounded by ``max_rows`` messages and ``max_message_bytes`` (a longer message is rejected by its
    MSH-10 without being held): a message split across byte chunks (anywhere, even between the CR and LF of a
    CRLF) is carried over to the next. Each message is independent
    (the warehouse applies them in MSH-7 order from ``adt_event_log`` whatever chunk or file they came in), so
    a chunk never depends on another."""
    rows: list[dict[str, Any]] = []
    rejected: list[dict[str, object]] = []
    content = 0  # bytes past the white space and framing at each chunk's ends
    last: int | None = None  # the line of the last message

    def watched(source: Iterator[bytes]) -> Iterator[bytes]:
        nonlocal content
        for chunk in source:
            content += len(chunk.strip(_FILLER))
            yield chunk

    for line, raw, complete in split_messages(watched(chunks), limit=max_message_bytes):
        last = line
        text = raw.decode(errors="replace")
        control = None
        try:
            if not complete:
                control = _control_id(text)
                raise _Unusable(f"message: longer than {max_message_bytes} bytes")
            message = hl7.parse(text)
            control = _control(message)
            if control is None:
                raise _Unusable("MSH-10: message control id is missing")
            rows.append(_row(message, control) | {"source_line": line})
        except _Unusable as exc:
            reason = UNSUPPORTED_EVENT if str(exc).startswith("MSH-9") else INVALID_MESSAGE
            rejected.append(rejection(line, reason, f"message {control or '(no MSH-10)'}: {exc}", control))
        # python-hl7 asserts on some damaged MSH segments (found by the fuzz test)
        except (hl7.ParseException, AssertionError, KeyError, IndexError, TypeError, ValueError, AttributeError):
            detail = f"message {control or '(no MSH-10)'}: not parseable as HL7 v2"
            rejected.append(rejection(line, INVALID_MESSAGE, detail, control))
        if len(rows) + len(rejected) >= max_rows:
            yield _chunk(rows, rejected)
            rows, rejected = [], []
    if rows or rejected:
        yield _chunk(rows, rejected)
    elif content > 0 and last is None:  # bytes, but not one MSH segment: not HL7 v2 at all
        rejected_file = pa.Table.from_pylist([rejection(None, UNREADABLE, _NO_MESSAGE)], schema=REJECTED)
        yield FeedChunk({}, rejected_file, whole_file=True)


def _control(message: hl7.Message) -> str | None:
    return _text(_field(message, "MSH.F10"), "MSH-10", 64)


def _control_id(msh: str) -> str | None:
    """MSH-10 of an MSH segment alone (a message too long to be parsed whole), if usable (none when the MSH
    itself was too long: python-hl7 refuses the empty text)."""
    try:
        return _control(hl7.parse(msh))
    except (_Unusable, hl7.ParseException, AssertionError, KeyError, IndexError, TypeError, ValueError,
            AttributeError):  # fmt: skip
        return None


def _chunk(rows: list[dict[str, Any]], rejected: list[dict[str, object]]) -> FeedChunk:
    table = pa.Table.from_pylist(rows, schema=with_source_line(ADT_EVENTS))
    index = table.schema.get_field_index("postal_code")
    table = table.set_column(index, "postal_code", safe_harbor_postal_code(table.column("postal_code")))
    return FeedChunk({"adt_events": table}, pa.Table.from_pylist(rejected, schema=REJECTED))
