"""The feed readers behind the ehr/claims parsers: gzip accepted, routing by prefix, one ParsedFile per chunk."""

from __future__ import annotations

import gzip

from loadtest.files import sample_files
from workers.pipelines import claims, ehr
from workers.pipelines.feeds import chunks_of


def test_chunks_of_gunzips_by_magic_number() -> None:
    data = bytes(range(256)) * 20_000  # 5 MiB: several output chunks
    assert b"".join(chunks_of(gzip.compress(data))) == data
    assert b"".join(chunks_of(data)) == data
    assert max(len(c) for c in chunks_of(gzip.compress(data))) <= 1 << 20


def test_every_sample_file_parses_plain_and_gzipped() -> None:
    """The handler hands parsers decompressed chunks: a gzip object's chunks give the same rows."""
    for key, data in sample_files().items():
        parse = claims.parse_claims_file if key.startswith("raw/claims/") else ehr.parse_ehr_file
        [plain] = parse(key, chunks_of(data))
        [zipped] = parse(key + ".gz", chunks_of(gzip.compress(data)))
        assert plain.rejected.num_rows == 0, key
        assert plain.tables, key
        assert {n: t.drop_columns([]) for n, t in zipped.tables.items()} == dict(plain.tables), key
