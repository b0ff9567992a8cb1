-- SCD type 2. Exactly one current version per patient (kept by the loader; Redshift has no partial index).
CREATE TABLE IF NOT EXISTS dim_patient (
    patient_key BIGINT      IDENTITY(1, 1) ENCODE AZ64,
    patient_id  VARCHAR(64) NOT NULL ENCODE RAW,
    birth_date  DATE                 ENCODE AZ64,
    sex         VARCHAR(16)          ENCODE ZSTD,
    postal_code VARCHAR(16)          ENCODE ZSTD,
    valid_from  TIMESTAMPTZ NOT NULL ENCODE RAW,
    valid_to    TIMESTAMPTZ          ENCODE AZ64,
    is_current  BOOLEAN     NOT NULL DEFAULT TRUE ENCODE RAW,
    PRIMARY KEY (patient_key),
    UNIQUE (patient_id, valid_from)
)
DISTSTYLE KEY
DISTKEY (patient_id)
COMPOUND SORTKEY (patient_id, valid_from);
