-- NEWS2 per patient and UTC hour (CONTRACT §9): the latest accepted reading of each parameter in the hour
-- (across the patient's devices), its score, the total and the risk band. Written by the vitals worker in the
-- transaction of every batch that changes one of the hour's inputs.
CREATE TABLE IF NOT EXISTS news2_hourly (
    patient_id  varchar(64)      NOT NULL,
    hour_start  timestamptz      NOT NULL,
    rr          double precision,
    spo2        double precision,
    sbp         double precision,
    pulse       double precision,
    temp        double precision,
    score_rr    integer,
    score_spo2  integer,
    score_sbp   integer,
    score_pulse integer,
    score_temp  integer,
    total       integer          NOT NULL,
    parameters  integer          NOT NULL,
    any_three   boolean          NOT NULL,
    risk        varchar(16)      NOT NULL,
    updated_at  timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT news2_hourly_key UNIQUE (patient_id, hour_start),
    CONSTRAINT news2_hourly_risk CHECK (risk IN ('low', 'low-medium', 'medium', 'high'))
);

-- Fleet-wide time ranges (dashboards, the daily mart); the key above serves per-patient reads.
CREATE INDEX IF NOT EXISTS news2_hourly_hour_brin ON news2_hourly USING brin (hour_start);
