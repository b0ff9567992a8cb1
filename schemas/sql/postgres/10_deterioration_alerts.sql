-- Deterioration alerts (CONTRACT §9) and their transactional outbox: a row is written in the transaction of
-- the batch whose NEWS2 update escalated the patient-hour (first medium/high, or medium -> high); the worker
-- publishes it to SNS after the commit and sets published_at. alert_id is deterministic (uuid5 of patient,
-- hour and risk), so a replayed batch raises nothing new. The score_* columns are the parameter scores when
-- the alert was raised (the published message carries them).
CREATE TABLE IF NOT EXISTS deterioration_alerts (
    alert_id     varchar(36)  NOT NULL,
    patient_id   varchar(64)  NOT NULL,
    hour_start   timestamptz  NOT NULL,
    risk         varchar(16)  NOT NULL,
    total        integer      NOT NULL,
    raised_at    timestamptz  NOT NULL DEFAULT now(),
    published_at timestamptz,
    score_rr     integer,
    score_spo2   integer,
    score_sbp    integer,
    score_pulse  integer,
    score_temp   integer,
    CONSTRAINT deterioration_alerts_key UNIQUE (alert_id),
    CONSTRAINT deterioration_alerts_once UNIQUE (patient_id, hour_start, risk),
    CONSTRAINT deterioration_alerts_risk CHECK (risk IN ('medium', 'high'))
);

-- The outbox: unpublished alerts, oldest first (publisher pass, outbox-age gauge).
CREATE INDEX IF NOT EXISTS deterioration_alerts_unpublished_idx ON deterioration_alerts (raised_at)
    WHERE published_at IS NULL;
