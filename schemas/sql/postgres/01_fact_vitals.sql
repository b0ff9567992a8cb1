-- One row per reading (CONTRACT §7). Natural key: (device_id, metric, measured_at); first received wins.
CREATE TABLE IF NOT EXISTS fact_vitals (
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
    loaded_at   timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT fact_vitals_natural_key UNIQUE (device_id, metric, measured_at)
);

CREATE INDEX IF NOT EXISTS fact_vitals_measured_at_idx ON fact_vitals (measured_at);

CREATE INDEX IF NOT EXISTS fact_vitals_patient_metric_idx ON fact_vitals (patient_id, metric, measured_at);

CREATE INDEX IF NOT EXISTS fact_vitals_batch_idx ON fact_vitals (batch_id);
