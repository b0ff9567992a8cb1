-- What a DMS CDC batch did, per source table, next to its load_audit row (written in the same transaction):
-- rows inserted, updated (an existing row or current version changed), deleted (removed / closed) and
-- ignored (superseded in the batch, or not newer than the change last applied to their key).
CREATE TABLE IF NOT EXISTS load_audit_changes (
    batch_id      VARCHAR(256) NOT NULL ENCODE ZSTD,
    source_table  VARCHAR(32)  NOT NULL ENCODE ZSTD,
    rows_inserted BIGINT       NOT NULL ENCODE AZ64,
    rows_updated  BIGINT       NOT NULL ENCODE AZ64,
    rows_deleted  BIGINT       NOT NULL ENCODE AZ64,
    rows_ignored  BIGINT       NOT NULL ENCODE AZ64,
    PRIMARY KEY (batch_id, source_table)
)
DISTSTYLE KEY
DISTKEY (batch_id)
SORTKEY (batch_id);
