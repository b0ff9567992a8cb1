-- What a DMS CDC batch did, per source table, next to its load_audit row (written in the same transaction):
-- rows inserted, updated (an existing row or current version changed), deleted (removed / closed) and
-- ignored (superseded in the batch, or not newer than the change last applied to their key).
CREATE TABLE IF NOT EXISTS load_audit_changes (
    batch_id      varchar(256) NOT NULL,
    source_table  varchar(32)  NOT NULL,
    rows_inserted bigint       NOT NULL,
    rows_updated  bigint       NOT NULL,
    rows_deleted  bigint       NOT NULL,
    rows_ignored  bigint       NOT NULL,
    CONSTRAINT load_audit_changes_natural_key PRIMARY KEY (batch_id, source_table)
);
