-- Quarantined readings, as received plus reason ('implausible' | 'spike') and detail.
-- At most one row per reading (informational UNIQUE; the load inserts only keys not present, under LOCK load_lock).
CREATE TABLE IF NOT EXISTS vitals_quarantine (
    quarantine_id BIGINT           IDENTITY(1, 1) ENCODE AZ64,
    device_id     VARCHAR(64)      NOT NULL ENCODE ZSTD,
    patient_id    VARCHAR(64)               ENCODE ZSTD,
    metric        VARCHAR(32)      NOT NULL ENCODE ZSTD,
    loinc_code    VARCHAR(16)      NOT NULL ENCODE ZSTD,
    value         DOUBLE PRECISION NOT NULL ENCODE ZSTD,
    unit          VARCHAR(32)      NOT NULL ENCODE ZSTD,
    measured_at   TIMESTAMPTZ      NOT NULL ENCODE RAW,
    received_at   TIMESTAMPTZ      NOT NULL ENCODE AZ64,
    message_id    VARCHAR(512)     NOT NULL ENCODE ZSTD,
    batch_id      VARCHAR(256)     NOT NULL ENCODE ZSTD,
    reason        VARCHAR(32)      NOT NULL ENCODE ZSTD,
    detail        VARCHAR(65535)            ENCODE ZSTD,
    loaded_at     TIMESTAMPTZ      NOT NULL DEFAULT GETDATE() ENCODE AZ64,
    PRIMARY KEY (quarantine_id),
    UNIQUE (device_id, metric, measured_at)
)
DISTSTYLE KEY
DISTKEY (device_id)
COMPOUND SORTKEY (measured_at);
