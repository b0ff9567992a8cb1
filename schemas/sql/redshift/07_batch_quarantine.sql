-- Rejected batch rows (line_number set) and whole files (line_number null).
CREATE TABLE IF NOT EXISTS batch_quarantine (
    quarantine_id  BIGINT         IDENTITY(1, 1) ENCODE AZ64,
    pipeline       VARCHAR(32)    NOT NULL ENCODE ZSTD,
    source_key     VARCHAR(1024)  NOT NULL ENCODE ZSTD,
    line_number    BIGINT                  ENCODE AZ64,
    reason         VARCHAR(64)    NOT NULL ENCODE ZSTD,
    detail         VARCHAR(65535)          ENCODE ZSTD,
    quarantined_at TIMESTAMPTZ    NOT NULL DEFAULT GETDATE() ENCODE RAW,
    PRIMARY KEY (quarantine_id)
)
DISTSTYLE EVEN
COMPOUND SORTKEY (quarantined_at);
