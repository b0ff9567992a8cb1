-- HL7 v2 ADT: every usable message once (by MSH-10), pseudonymised (no names, addresses, phones, SSNs).
-- dim_patient versions and fact_encounters rows of the patients and visits it carries are rebuilt from it in
-- MSH-7 order, so messages delivered in any order, or twice, give the same tables (CONTRACT §8).
CREATE TABLE IF NOT EXISTS adt_event_log (
    message_control_id varchar(64)  PRIMARY KEY,
    message_ts         timestamptz  NOT NULL,
    event              varchar(3)   NOT NULL,
    patient_id         varchar(64)  NOT NULL,
    prior_patient_id   varchar(64),
    encounter_id       varchar(64),
    encounter_type     varchar(64),
    provider_id        varchar(64),
    admit_at           timestamptz,
    discharge_at       timestamptz,
    primary_dx         varchar(16),
    birth_date         date,
    sex                varchar(16),
    postal_code        varchar(16)
);

CREATE INDEX IF NOT EXISTS adt_event_log_patient_idx ON adt_event_log (patient_id);
CREATE INDEX IF NOT EXISTS adt_event_log_encounter_idx ON adt_event_log (encounter_id);
