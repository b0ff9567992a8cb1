-- DMS CDC: the commit time (and operation) of the newest change applied to each source key, written in the
-- transaction of the batch that applied it. A change not newer than it is ignored (CONTRACT §8).
CREATE TABLE IF NOT EXISTS cdc_key_state (
    source_table   varchar(32)  NOT NULL,
    key_value      varchar(64)  NOT NULL,
    last_commit_ts timestamptz  NOT NULL,
    last_op        varchar(1)   NOT NULL,
    CONSTRAINT cdc_key_state_natural_key PRIMARY KEY (source_table, key_value)
);
