-- One row per reading (CONTRACT §7). Natural key (device_id, metric, measured_at): UNIQUE is informational
-- in Redshift; the load inserts only keys not present, one load at a time (LOCK load_lock).
-- VARCHAR lengths are bytes in Redshift: message_id (up to 128 characters of any script) is 4 x 128 bytes.
-- Sort-key columns stay RAW, as Redshift's automatic encoding does.
CREATE TABLE IF NOT EXISTS fact_vitals (
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
    loaded_at   TIMESTAMPTZ      NOT NULL DEFAULT GETDATE() ENCODE AZ64,
    UNIQUE (device_id, metric, measured_at)
)
DISTSTYLE KEY
DISTKEY (device_id)
COMPOUND SORTKEY (measured_at);
