-- NEWS2 per patient and UTC hour (CONTRACT §9). Key (informational in Redshift, enforced by MERGE):
-- (patient_id, hour_start). Sort-key columns stay RAW.
CREATE TABLE IF NOT EXISTS news2_hourly (
    patient_id  VARCHAR(64)      NOT NULL ENCODE ZSTD,
    hour_start  TIMESTAMPTZ      NOT NULL ENCODE RAW,
    rr          DOUBLE PRECISION          ENCODE ZSTD,
    spo2        DOUBLE PRECISION          ENCODE ZSTD,
    sbp         DOUBLE PRECISION          ENCODE ZSTD,
    pulse       DOUBLE PRECISION          ENCODE ZSTD,
    temp        DOUBLE PRECISION          ENCODE ZSTD,
    score_rr    INTEGER                   ENCODE AZ64,
    score_spo2  INTEGER                   ENCODE AZ64,
    score_sbp   INTEGER                   ENCODE AZ64,
    score_pulse INTEGER                   ENCODE AZ64,
    score_temp  INTEGER                   ENCODE AZ64,
    total       INTEGER          NOT NULL ENCODE AZ64,
    parameters  INTEGER          NOT NULL ENCODE AZ64,
    any_three   BOOLEAN          NOT NULL ENCODE ZSTD,
    risk        VARCHAR(16)      NOT NULL ENCODE ZSTD,
    updated_at  TIMESTAMPTZ      NOT NULL DEFAULT GETDATE() ENCODE AZ64,
    UNIQUE (patient_id, hour_start)
)
DISTSTYLE KEY
DISTKEY (patient_id)
COMPOUND SORTKEY (hour_start);
