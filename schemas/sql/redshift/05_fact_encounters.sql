-- One row per encounter; a later delivery of the same encounter_id updates it.
CREATE TABLE IF NOT EXISTS fact_encounters (
    encounter_id         VARCHAR(64)      NOT NULL ENCODE ZSTD,
    patient_id           VARCHAR(64)      NOT NULL ENCODE ZSTD,
    provider_id          VARCHAR(64)               ENCODE ZSTD,
    encounter_type       VARCHAR(64)               ENCODE ZSTD,
    admit_at             TIMESTAMPTZ      NOT NULL ENCODE RAW,
    discharge_at         TIMESTAMPTZ               ENCODE AZ64,
    length_of_stay_hours DOUBLE PRECISION          ENCODE ZSTD,
    primary_dx           VARCHAR(16)               ENCODE ZSTD,
    PRIMARY KEY (encounter_id)
)
DISTSTYLE KEY
DISTKEY (patient_id)
COMPOUND SORTKEY (admit_at);
