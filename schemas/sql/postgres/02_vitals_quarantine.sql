-- Quarantined readings, as received (canonical unit) plus reason ('implausible' | 'spike') and detail.
-- At most one row per reading: a late duplicate of a quarantined reading never adds a row.
CREATE TABLE IF NOT EXISTS vitals_quarantine (
    quarantine_id bigserial        PRIMARY KEY,
    device_id     varchar(64)      NOT NULL,
    patient_id    varchar(64),
    metric        varchar(32)      NOT NULL,
    loinc_code    varchar(16)      NOT NULL,
    value         double precision NOT NULL,
    unit          varchar(32)      NOT NULL,
    measured_at   timestamptz      NOT NULL,
    received_at   timestamptz      NOT NULL,
    message_id    varchar(128)     NOT NULL,
    batch_id      varchar(256)     NOT NULL,
    reason        varchar(32)      NOT NULL,
    detail        text,
    loaded_at     timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT vitals_quarantine_natural_key UNIQUE (device_id, metric, measured_at)
);

CREATE INDEX IF NOT EXISTS vitals_quarantine_reason_idx ON vitals_quarantine (reason, measured_at);

CREATE INDEX IF NOT EXISTS vitals_quarantine_batch_idx ON vitals_quarantine (batch_id);
