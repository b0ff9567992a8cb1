-- Deterioration alerts (CONTRACT §9) and their transactional outbox; alert_id is deterministic (uuid5 of
-- patient, hour and risk). UNIQUE is informational in Redshift: the insert skips ids already present.
CREATE TABLE IF NOT EXISTS deterioration_alerts (
    alert_id     VARCHAR(36)  NOT NULL ENCODE ZSTD,
    patient_id   VARCHAR(64)  NOT NULL ENCODE ZSTD,
    hour_start   TIMESTAMPTZ  NOT NULL ENCODE AZ64,
    risk         VARCHAR(16)  NOT NULL ENCODE ZSTD,
    total        INTEGER      NOT NULL ENCODE AZ64,
    raised_at    TIMESTAMPTZ  NOT NULL DEFAULT GETDATE() ENCODE RAW,
    published_at TIMESTAMPTZ           ENCODE AZ64,
    score_rr     INTEGER               ENCODE AZ64,
    score_spo2   INTEGER               ENCODE AZ64,
    score_sbp    INTEGER               ENCODE AZ64,
    score_pulse  INTEGER               ENCODE AZ64,
    score_temp   INTEGER               ENCODE AZ64,
    UNIQUE (alert_id),
    UNIQUE (patient_id, hour_start, risk)
)
DISTSTYLE KEY
DISTKEY (patient_id)
COMPOUND SORTKEY (raised_at);
