-- One row per claim line; a later file with the same (claim_id, line_number) updates it.
CREATE TABLE IF NOT EXISTS fact_claims (
    claim_id       varchar(64)   NOT NULL,
    line_number    integer       NOT NULL,
    patient_id     varchar(64)   NOT NULL,
    provider_npi   varchar(16),
    service_date   date          NOT NULL,
    procedure_code varchar(16),
    dx_code        varchar(16),
    billed_amount  numeric(12,2),
    allowed_amount numeric(12,2),
    paid_amount    numeric(12,2),
    status         varchar(16)   NOT NULL CHECK (status IN ('paid', 'denied', 'pending')),
    denial_reason  varchar(256),
    CONSTRAINT fact_claims_natural_key PRIMARY KEY (claim_id, line_number)
);

CREATE INDEX IF NOT EXISTS fact_claims_patient_idx ON fact_claims (patient_id, service_date);
