-- HL7 v2 ADT: every usable message once (by MSH-10), pseudonymised (no names, addresses, phones, SSNs).
-- dim_patient versions and fact_encounters rows of the patients and visits it carries are rebuilt from it in
-- MSH-7 order, so messages delivered in any order, or twice, give the same tables (CONTRACT §8).
CREATE TABLE IF NOT EXISTS adt_event_log (
    message_control_id VARCHAR(64)  NOT NULL ENCODE ZSTD,
    message_ts         TIMESTAMPTZ  NOT NULL ENCODE AZ64,
    event              VARCHAR(3)   NOT NULL ENCODE ZSTD,
    patient_id         VARCHAR(64)  NOT NULL ENCODE ZSTD,
    prior_patient_id   VARCHAR(64)           ENCODE ZSTD,
    encounter_id       VARCHAR(64)           ENCODE ZSTD,
    encounter_type     VARCHAR(64)           ENCODE ZSTD,
    provider_id        VARCHAR(64)           ENCODE ZSTD,
    admit_at           TIMESTAMPTZ           ENCODE AZ64,
    discharge_at       TIMESTAMPTZ           ENCODE AZ64,
    primary_dx         VARCHAR(16)           ENCODE ZSTD,
    birth_date         DATE                  ENCODE AZ64,
    sex                VARCHAR(16)           ENCODE ZSTD,
    postal_code        VARCHAR(16)           ENCODE ZSTD,
    PRIMARY KEY (message_control_id)
)
DISTSTYLE KEY
DISTKEY (patient_id)
COMPOUND SORTKEY (patient_id, message_ts);
