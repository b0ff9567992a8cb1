-- SCD type 2. Exactly one current version per patient; no names or street addresses.
CREATE TABLE IF NOT EXISTS dim_patient (
    patient_key bigserial   PRIMARY KEY,
    patient_id  varchar(64) NOT NULL,
    birth_date  date,
    sex         varchar(16),
    postal_code varchar(16),
    valid_from  timestamptz NOT NULL,
    valid_to    timestamptz,
    is_current  boolean     NOT NULL DEFAULT true,
    CONSTRAINT dim_patient_version_key UNIQUE (patient_id, valid_from)
);

CREATE UNIQUE INDEX IF NOT EXISTS dim_patient_current_idx ON dim_patient (patient_id) WHERE is_current;
