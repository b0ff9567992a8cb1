-- DMS CDC: every change of a source patient (one per key and commit time), pseudonymised like dim_patient.
-- dim_patient's versions of a CDC patient are rebuilt from it in commit-time order on every batch that
-- touches the patient, so files delivered in any order give the same history (CONTRACT §8).
CREATE TABLE IF NOT EXISTS cdc_patient_log (
    patient_id    VARCHAR(64)  NOT NULL ENCODE ZSTD,
    dms_commit_ts TIMESTAMPTZ  NOT NULL ENCODE AZ64,
    op            VARCHAR(1)   NOT NULL ENCODE ZSTD,
    birth_date    DATE                  ENCODE AZ64,
    sex           VARCHAR(16)           ENCODE ZSTD,
    postal_code   VARCHAR(16)           ENCODE ZSTD,
    PRIMARY KEY (patient_id, dms_commit_ts)
)
DISTSTYLE KEY
DISTKEY (patient_id)
COMPOUND SORTKEY (patient_id, dms_commit_ts);
