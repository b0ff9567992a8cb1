-- One row per encounter; a later delivery of the same encounter_id updates it.
CREATE TABLE IF NOT EXISTS fact_encounters (
    encounter_id         varchar(64)      PRIMARY KEY,
    patient_id           varchar(64)      NOT NULL,
    provider_id          varchar(64),
    encounter_type       varchar(64),
    admit_at             timestamptz      NOT NULL,
    discharge_at         timestamptz,
    length_of_stay_hours double precision,
    primary_dx           varchar(16)
);

CREATE INDEX IF NOT EXISTS fact_encounters_patient_idx ON fact_encounters (patient_id, admit_at);
