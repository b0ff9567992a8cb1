"""Manifest sink: Redshift COPY manifests per batch, ``manifests/vitals/<batch_id>.manifest`` (processed files)
and ``manifests/vitals-quarantine/<batch_id>.manifest`` (quarantine objects: one COPY however many there are).

Format (Redshift ``COPY … MANIFEST`` for Parquet): ``{"entries": [{"url": "s3://…", "mandatory": true,
"meta": {"content_length": N}}]}``; ``content_length`` is the object's exact size in bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from common.s3 import get_object, put_object
from workers.sinks.layout import manifest_key, quarantine_manifest_key, s3_url

__all__ = ["ManifestEntry", "ManifestS3", "build_manifest", "parse_manifest"]


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    url: str
    content_length: int


def build_manifest(entries: Sequence[ManifestEntry]) -> bytes:
    return orjson.dumps(
        {
            "entries": [
                {"url": e.url, "mandatory": True, "meta": {"content_length": e.content_length}}
                for e in sorted(entries, key=lambda e: e.url)
            ]
        },
        option=orjson.OPT_INDENT_2,
    )


def parse_manifest(data: bytes) -> list[ManifestEntry]:
    document = orjson.loads(data)
    return [ManifestEntry(str(e["url"]), int(e["meta"]["content_length"])) for e in document.get("entries", [])]


class ManifestS3:
    def __init__(self, s3: Any, bucket: str, *, kms_key_id: str | None = None) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.kms_key_id = kms_key_id

    def url(self, batch_id: str) -> str:
        return s3_url(self.bucket, manifest_key(batch_id))

    async def write(self, batch_id: str, entries: Sequence[ManifestEntry]) -> str:
        """Write (overwrite) the batch's manifest; returns its ``s3://`` URL."""
        key = manifest_key(batch_id)
        await put_object(
            self.s3, self.bucket, key, build_manifest(entries), content_type="application/json",
            kms_key_id=self.kms_key_id,
        )  # fmt: skip
        return s3_url(self.bucket, key)

    async def write_quarantine(self, batch_id: str, entries: Sequence[ManifestEntry]) -> str:
        """Write (overwrite) the manifest of the batch's quarantine objects; returns its ``s3://`` URL."""
        key = quarantine_manifest_key(batch_id)
        await put_object(
            self.s3, self.bucket, key, build_manifest(entries), content_type="application/json",
            kms_key_id=self.kms_key_id,
        )  # fmt: skip
        return s3_url(self.bucket, key)

    async def read(self, batch_id: str) -> list[ManifestEntry] | None:
        data = await get_object(self.s3, self.bucket, manifest_key(batch_id))
        return None if data is None else parse_manifest(data)
