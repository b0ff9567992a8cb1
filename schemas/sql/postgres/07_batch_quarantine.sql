-- Rejected batch rows (line_number set) and whole files (line_number null).
CREATE TABLE IF NOT EXISTS batch_quarantine (
    quarantine_id  bigserial     PRIMARY KEY,
    pipeline       varchar(32)   NOT NULL,
    source_key     varchar(1024) NOT NULL,
    line_number    bigint,
    reason         varchar(64)   NOT NULL,
    detail         text,
    quarantined_at timestamptz   NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS batch_quarantine_source_idx ON batch_quarantine (pipeline, source_key, line_number);
