-- One row per claim line; a later file with the same (claim_id, line_number) updates it.
-- Redshift has no CHECK constraints: status IN ('paid', 'denied', 'pending') is enforced by the loader.
CREATE TABLE IF NOT EXISTS fact_claims (
    claim_id       VARCHAR(64)   NOT NULL ENCODE ZSTD,
    line_number    INTEGER       NOT NULL ENCODE AZ64,
    patient_id     VARCHAR(64)   NOT NULL ENCODE ZSTD,
    provider_npi   VARCHAR(16)            ENCODE ZSTD,
    service_date   DATE          NOT NULL ENCODE RAW,
    procedure_code VARCHAR(16)            ENCODE ZSTD,
    dx_code        VARCHAR(16)            ENCODE ZSTD,
    billed_amount  DECIMAL(12, 2)         ENCODE AZ64,
    allowed_amount DECIMAL(12, 2)         ENCODE AZ64,
    paid_amount    DECIMAL(12, 2)         ENCODE AZ64,
    status         VARCHAR(16)   NOT NULL ENCODE ZSTD,
    denial_reason  VARCHAR(256)           ENCODE ZSTD,
    PRIMARY KEY (claim_id, line_number)
)
DISTSTYLE KEY
DISTKEY (patient_id)
COMPOUND SORTKEY (service_date);
