-- One row per committed batch; a batch already audited is never loaded again.
CREATE TABLE IF NOT EXISTS load_audit (
    batch_id         varchar(256) PRIMARY KEY,
    pipeline         varchar(32)  NOT NULL,
    rows_in          bigint       NOT NULL,
    rows_loaded      bigint       NOT NULL,
    rows_quarantined bigint       NOT NULL,
    rows_duplicate   bigint       NOT NULL,
    committed_at     timestamptz  NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS load_audit_pipeline_idx ON load_audit (pipeline, committed_at);
