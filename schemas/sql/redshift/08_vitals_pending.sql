-- Readings held by the vitals worker's spike detection until their successor arrives (or the hold limit
-- passes): written in the same transaction as the batch that held them, so holding survives a crash.
-- At most one row per reading (informational UNIQUE; the load inserts only keys not present, under LOCK load_lock).
CREATE TABLE IF NOT EXISTS vitals_pending (
    device_id   VARCHAR(64)      NOT NULL ENCODE ZSTD,
    patient_id  VARCHAR(64)               ENCODE ZSTD,
    metric      VARCHAR(32)      NOT NULL ENCODE ZSTD,
    loinc_code  VARCHAR(16)      NOT NULL ENCODE ZSTD,
    value       DOUBLE PRECISION NOT NULL ENCODE ZSTD,
    unit        VARCHAR(32)      NOT NULL ENCODE ZSTD,
    measured_at TIMESTAMPTZ      NOT NULL ENCODE RAW,
    received_at TIMESTAMPTZ      NOT NULL ENCODE AZ64,
    message_id  VARCHAR(512)     NOT NULL ENCODE ZSTD,
    batch_id    VARCHAR(256)     NOT NULL ENCODE ZSTD,
    source_id   VARCHAR(256)     NOT NULL ENCODE ZSTD,
    held_at     TIMESTAMPTZ      NOT NULL DEFAULT GETDATE() ENCODE AZ64,
    UNIQUE (device_id, metric, measured_at)
)
DISTSTYLE KEY
DISTKEY (device_id)
COMPOUND SORTKEY (device_id, metric, measured_at);
