-- The analyst schema (CONTRACT §10), Redshift: the same views as on PostgreSQL (see its 30_analyst.sql).
--
-- Keyed hash: Redshift has no HMAC function and SHA2 hashes character strings only, so the key is a secret
-- string K of at least 32 characters (generated outside the database: `aws secretsmanager get-random-password
-- --exclude-punctuation --password-length 64`, inserted once by the owner, deploy/README.md) and
--     patient_id -> SHA2(K || SHA2(K || patient_id, 256), 256)   (hex)
-- the nested keyed construction (the outer keyed hash closes the length extension a single SHA2(K || id)
-- would allow). K lives in vitalstream_private.pseudonym_key, which only the owner can read; the views (standard
-- views: they read their tables with the owner's rights) join it. Until K is inserted, every hashed view is
-- empty (the join has no key row): fail closed. Hashes differ from the PostgreSQL stand-in's (another key,
-- another construction); within one warehouse they are stable.
CREATE SCHEMA IF NOT EXISTS vitalstream_private;

CREATE TABLE IF NOT EXISTS vitalstream_private.pseudonym_key (
    key        VARCHAR(256) NOT NULL,
    created_at TIMESTAMPTZ  NOT NULL DEFAULT GETDATE()
)
DISTSTYLE ALL;

CREATE SCHEMA IF NOT EXISTS analyst;

CREATE OR REPLACE VIEW analyst.fact_vitals AS
SELECT
    SHA2(k.key || SHA2(k.key || v.patient_id, 256), 256) AS patient_id,
    v.metric, v.loinc_code, v.value, v.unit, v.measured_at, v.received_at, v.batch_id, v.loaded_at
FROM public.fact_vitals AS v
CROSS JOIN vitalstream_private.pseudonym_key AS k;

CREATE OR REPLACE VIEW analyst.vitals_quarantine AS
SELECT
    q.quarantine_id,
    SHA2(k.key || SHA2(k.key || q.patient_id, 256), 256) AS patient_id,
    q.metric, q.loinc_code, q.value, q.unit, q.measured_at, q.received_at, q.batch_id, q.reason, q.detail,
    q.loaded_at
FROM public.vitals_quarantine AS q
CROSS JOIN vitalstream_private.pseudonym_key AS k;

CREATE OR REPLACE VIEW analyst.dim_patient AS
SELECT
    p.patient_key,
    SHA2(k.key || SHA2(k.key || p.patient_id, 256), 256) AS patient_id,
    CAST(DATE_PART(year, p.birth_date) AS INTEGER) AS birth_year,
    p.sex, p.postal_code, p.valid_from, p.valid_to, p.is_current
FROM public.dim_patient AS p
CROSS JOIN vitalstream_private.pseudonym_key AS k;

CREATE OR REPLACE VIEW analyst.fact_encounters AS
SELECT
    e.encounter_id,
    SHA2(k.key || SHA2(k.key || e.patient_id, 256), 256) AS patient_id,
    e.provider_id, e.encounter_type, e.admit_at, e.discharge_at, e.length_of_stay_hours, e.primary_dx
FROM public.fact_encounters AS e
CROSS JOIN vitalstream_private.pseudonym_key AS k;

CREATE OR REPLACE VIEW analyst.fact_claims AS
SELECT
    c.claim_id, c.line_number,
    SHA2(k.key || SHA2(k.key || c.patient_id, 256), 256) AS patient_id,
    c.provider_npi, c.service_date, c.procedure_code, c.dx_code, c.billed_amount, c.allowed_amount,
    c.paid_amount, c.status, c.denial_reason
FROM public.fact_claims AS c
CROSS JOIN vitalstream_private.pseudonym_key AS k;

CREATE OR REPLACE VIEW analyst.load_audit AS
SELECT batch_id, pipeline, rows_in, rows_loaded, rows_quarantined, rows_duplicate, committed_at
FROM public.load_audit;

CREATE OR REPLACE VIEW analyst.news2_hourly AS
SELECT
    SHA2(k.key || SHA2(k.key || n.patient_id, 256), 256) AS patient_id,
    n.hour_start, n.rr, n.spo2, n.sbp, n.pulse, n.temp, n.score_rr, n.score_spo2, n.score_sbp, n.score_pulse,
    n.score_temp, n.total, n.parameters, n.any_three, n.risk, n.updated_at
FROM public.news2_hourly AS n
CROSS JOIN vitalstream_private.pseudonym_key AS k;

CREATE OR REPLACE VIEW analyst.deterioration_alerts AS
SELECT
    a.alert_id,
    SHA2(k.key || SHA2(k.key || a.patient_id, 256), 256) AS patient_id,
    a.hour_start, a.risk, a.total, a.raised_at, a.published_at, a.score_rr, a.score_spo2, a.score_sbp,
    a.score_pulse, a.score_temp
FROM public.deterioration_alerts AS a
CROSS JOIN vitalstream_private.pseudonym_key AS k;

CREATE OR REPLACE VIEW analyst.daily_patient_summary AS
SELECT
    SHA2(k.key || SHA2(k.key || s.patient_id, 256), 256) AS patient_id,
    s.day, s.metric, s.readings, s.min_value, s.max_value, s.avg_value, s.quarantined, s.max_news2
FROM public.daily_patient_summary AS s
CROSS JOIN vitalstream_private.pseudonym_key AS k;

CREATE OR REPLACE VIEW analyst.census_daily AS
SELECT day, encounter_type, patients_in_house FROM public.census_daily;

CREATE OR REPLACE VIEW analyst.avg_vitals_by_diagnosis AS
SELECT primary_dx, metric, patients, readings, avg_value FROM public.avg_vitals_by_diagnosis;

CREATE OR REPLACE VIEW analyst.claims_denial_rate_monthly AS
SELECT month, denial_reason, claim_lines, denied_lines, denial_rate FROM public.claims_denial_rate_monthly;

CREATE OR REPLACE VIEW analyst.readmissions_30d AS
SELECT
    SHA2(k.key || SHA2(k.key || r.patient_id, 256), 256) AS patient_id,
    r.encounter_id, r.discharge_at, r.readmission_encounter_id, r.days_to_readmission
FROM public.readmissions_30d AS r
CROSS JOIN vitalstream_private.pseudonym_key AS k;
