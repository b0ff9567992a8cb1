-- One row per committed batch; a batch already audited is never loaded again. Looked up by batch_id on every
-- load (the guards), so batch_id is the sort key.
CREATE TABLE IF NOT EXISTS load_audit (
    batch_id         VARCHAR(256) NOT NULL ENCODE RAW,
    pipeline         VARCHAR(32)  NOT NULL ENCODE ZSTD,
    rows_in          BIGINT       NOT NULL ENCODE AZ64,
    rows_loaded      BIGINT       NOT NULL ENCODE AZ64,
    rows_quarantined BIGINT       NOT NULL ENCODE AZ64,
    rows_duplicate   BIGINT       NOT NULL ENCODE AZ64,
    committed_at     TIMESTAMPTZ  NOT NULL DEFAULT GETDATE() ENCODE AZ64,
    PRIMARY KEY (batch_id)
)
DISTSTYLE ALL
COMPOUND SORTKEY (batch_id);
