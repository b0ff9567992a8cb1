-- DMS CDC: the commit time (and operation) of the newest change applied to each source key, written in the
-- transaction of the batch that applied it. A change not newer than it is ignored (CONTRACT §8).
CREATE TABLE IF NOT EXISTS cdc_key_state (
    source_table   VARCHAR(32)  NOT NULL ENCODE ZSTD,
    key_value      VARCHAR(64)  NOT NULL ENCODE ZSTD,
    last_commit_ts TIMESTAMPTZ  NOT NULL ENCODE AZ64,
    last_op        VARCHAR(1)   NOT NULL ENCODE ZSTD,
    PRIMARY KEY (source_table, key_value)
)
DISTSTYLE KEY
DISTKEY (key_value)
COMPOUND SORTKEY (source_table, key_value);
