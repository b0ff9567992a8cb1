"""Parsing S3 ObjectCreated notifications (pure part of the S3-event source). No I/O."""

from __future__ import annotations

import orjson

from workers.sources.s3_events import parse_events


def _body(*records: object) -> str:
    return orjson.dumps({"Records": list(records)}).decode()


def test_object_created_key_is_url_decoded_and_position_is_version_or_etag() -> None:
    record = {
        "eventName": "ObjectCreated:Put",
        "eventTime": "2026-01-02T03:04:05.000Z",
        "s3": {"bucket": {"name": "lake"}, "object": {"key": "raw/claims/2026+11/a%2Bb.csv", "eTag": '"abc"'}},
    }
    [event] = parse_events(_body(record))
    assert event.key == "raw/claims/2026 11/a+b.csv"
    assert event.bucket == "lake"
    assert event.position == "abc"
    assert event.event_time_us == 1_767_323_045_000_000
    versioned = {**record, "s3": {"bucket": {"name": "lake"}, "object": {"key": "k", "versionId": "v1"}}}
    assert parse_events(_body(versioned))[0].position == "v1"


def test_test_event_other_events_and_garbage_yield_nothing() -> None:
    assert parse_events(orjson.dumps({"Event": "s3:TestEvent", "Service": "Amazon S3"}).decode()) == []
    assert parse_events(_body({"eventName": "ObjectRemoved:Delete", "s3": {}})) == []
    assert parse_events("not json") == []
