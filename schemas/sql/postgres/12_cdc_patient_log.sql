-- DMS CDC: every change of a source patient (one per key and commit time), pseudonymised like dim_patient.
-- dim_patient's versions of a CDC patient are rebuilt from it in commit-time order on every batch that
-- touches the patient, so files delivered in any order give the same history (CONTRACT §8).
CREATE TABLE IF NOT EXISTS cdc_patient_log (
    patient_id    varchar(64)  NOT NULL,
    dms_commit_ts timestamptz  NOT NULL,
    op            varchar(1)   NOT NULL,
    birth_date    date,
    sex           varchar(16),
    postal_code   varchar(16),
    CONSTRAINT cdc_patient_log_natural_key PRIMARY KEY (patient_id, dms_commit_ts)
);
