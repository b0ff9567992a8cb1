-- Readings held by the vitals worker's spike detection until their successor arrives (or the hold limit
-- passes): written in the same transaction as the batch that held them, so holding survives a crash.
-- At most one row per reading; deleted by the batch that decides it (into fact_vitals or vitals_quarantine).
CREATE TABLE IF NOT EXISTS vitals_pending (
    device_id   varchar(64)      NOT NULL,
    patient_id  varchar(64),
    metric      varchar(32)      NOT NULL,
    loinc_code  varchar(16)      NOT NULL,
    value       double precision NOT NULL,
    unit        varchar(32)      NOT NULL,
    measured_at timestamptz      NOT NULL,
    received_at timestamptz      NOT NULL,
    message_id  varchar(128)     NOT NULL,
    batch_id    varchar(256)     NOT NULL,
    source_id   varchar(256)     NOT NULL,
    held_at     timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT vitals_pending_natural_key UNIQUE (device_id, metric, measured_at)
);

CREATE INDEX IF NOT EXISTS vitals_pending_source_idx ON vitals_pending (source_id, received_at);
