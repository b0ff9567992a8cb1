"""service.normalise: envelopes per device, defaults, the fast message id equals the contract's."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from schemas.catalogue import METRICS
from schemas.envelope import decode_envelope
from schemas.wire import derive_message_id
from service.normalise import MAX_RECORD_BYTES, build_records, message_id
from service.validate import ValidReading


@given(
    device=st.text(min_size=1, max_size=64),
    metric=st.sampled_from(list(METRICS)),
    at=st.integers(-(2**60), 2**60),
    value=st.floats(allow_nan=False, allow_infinity=False),
)
def test_fast_message_id_is_derive_message_id(device: str, metric: str, at: int, value: float) -> None:
    assert message_id(device, metric, at, value) == derive_message_id(device, metric, at, value)


def valid(index: int, **changes: object) -> ValidReading:
    fields: dict[str, object] = dict(
        index=index, device_id="dev-1", patient_id=None, message_id=None, metric=METRICS["body_temp"],
        value=37.0, measured_at_us=1_000_000 + index,
    )  # fmt: skip
    fields.update(changes)
    return ValidReading(**fields)  # type: ignore[arg-type]


def test_one_envelope_per_device_with_defaults_and_canonical_columns() -> None:
    records = build_records("req-1", 42, [valid(0), valid(1, patient_id="pat-x", message_id="m-1")], "pat-default")
    assert len(records) == 1
    record = records[0]
    assert record.partition_key == "dev-1"
    assert record.readings == 2
    envelope = decode_envelope(record.data)
    assert envelope["request_id"] == "req-1"
    assert envelope["received_at_us"] == 42
    columns = envelope["readings"]
    assert columns["patient_id"] == ["pat-default", "pat-x"]
    assert columns["message_id"] == [derive_message_id("dev-1", "body_temp", 1_000_000, 37.0), "m-1"]
    assert columns["unit"] == ["Cel", "Cel"]
    assert columns["loinc_code"] == ["8310-5", "8310-5"]


def test_oversize_envelopes_are_split_by_device() -> None:
    big = [valid(i, message_id=f"{i:0128d}", patient_id="p" * 64) for i in range(5000)]
    records = build_records("req", 1, big, None)
    assert len(records) > 1
    assert all(len(r.data) <= MAX_RECORD_BYTES for r in records)
    assert sum(r.readings for r in records) == 5000
    ids = [m for r in records for m in decode_envelope(r.data)["readings"]["message_id"]]
    assert ids == [f"{i:0128d}" for i in range(5000)]
