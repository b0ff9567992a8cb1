-- The analyst schema (CONTRACT §10): the facts and marts under the same names, with patient_id replaced by a
-- keyed hash, birth_year instead of birth_date, and no device_id or message_id.
--
-- Keyed hash: hex(HMAC-SHA256(key, UTF-8 bytes of patient_id)) with pgcrypto's hmac(). The 32-byte random key
-- is created once per database in vitalstream_private.pseudonym_key, a schema only the owner can use; the
-- views read it with their owner's rights, so an analyst sees hashes but can neither read the key nor hash a
-- guessed id. The key never changes (refreshes keep every hash); rotating it (a new row after deleting the
-- old) re-keys every hash at once. The views are security barriers, so an analyst's own functions in a WHERE
-- clause only ever see rows and columns the view returns.
CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE SCHEMA IF NOT EXISTS vitalstream_private;

REVOKE ALL ON SCHEMA vitalstream_private FROM PUBLIC;

CREATE TABLE IF NOT EXISTS vitalstream_private.pseudonym_key (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    key        bytea       NOT NULL CHECK (octet_length(key) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO vitalstream_private.pseudonym_key (key) VALUES (gen_random_bytes(32)) ON CONFLICT DO NOTHING;

CREATE SCHEMA IF NOT EXISTS analyst;

CREATE OR REPLACE VIEW analyst.fact_vitals WITH (security_barrier) AS
SELECT
    encode(hmac(convert_to(v.patient_id, 'UTF8'), k.key, 'sha256'), 'hex') AS patient_id,
    v.metric, v.loinc_code, v.value, v.unit, v.measured_at, v.received_at, v.batch_id, v.loaded_at
FROM public.fact_vitals AS v
CROSS JOIN vitalstream_private.pseudonym_key AS k;

CREATE OR REPLACE VIEW analyst.vitals_quarantine WITH (security_barrier) AS
SELECT
    q.quarantine_id,
    encode(hmac(convert_to(q.patient_id, 'UTF8'), k.key, 'sha256'), 'hex') AS patient_id,
    q.metric, q.loinc_code, q.value, q.unit, q.measured_at, q.received_at, q.batch_id, q.reason, q.detail,
    q.loaded_at
FROM public.vitals_quarantine AS q
CROSS JOIN vitalstream_private.pseudonym_key AS k;

CREATE OR REPLACE VIEW analyst.dim_patient WITH (security_barrier) AS
SELECT
    p.patient_key,
    encode(hmac(convert_to(p.patient_id, 'UTF8'), k.key, 'sha256'), 'hex') AS patient_id,
    extract(year FROM p.birth_date)::integer AS birth_year,
    p.sex, p.postal_code, p.valid_from, p.valid_to, p.is_current
FROM public.dim_patient AS p
CROSS JOIN vitalstream_private.pseudonym_key AS k;

CREATE OR REPLACE VIEW analyst.fact_encounters WITH (security_barrier) AS
SELECT
    e.encounter_id,
    encode(hmac(convert_to(e.patient_id, 'UTF8'), k.key, 'sha256'), 'hex') AS patient_id,
    e.provider_id, e.encounter_type, e.admit_at, e.discharge_at, e.length_of_stay_hours, e.primary_dx
FROM public.fact_encounters AS e
CROSS JOIN vitalstream_private.pseudonym_key AS k;

CREATE OR REPLACE VIEW analyst.fact_claims WITH (security_barrier) AS
SELECT
    c.claim_id, c.line_number,
    encode(hmac(convert_to(c.patient_id, 'UTF8'), k.key, 'sha256'), 'hex') AS patient_id,
    c.provider_npi, c.service_date, c.procedure_code, c.dx_code, c.billed_amount, c.allowed_amount,
    c.paid_amount, c.status, c.denial_reason
FROM public.fact_claims AS c
CROSS JOIN vitalstream_private.pseudonym_key AS k;

CREATE OR REPLACE VIEW analyst.load_audit AS
SELECT batch_id, pipeline, rows_in, rows_loaded, rows_quarantined, rows_duplicate, committed_at
FROM public.load_audit;

CREATE OR REPLACE VIEW analyst.news2_hourly WITH (security_barrier) AS
SELECT
    encode(hmac(convert_to(n.patient_id, 'UTF8'), k.key, 'sha256'), 'hex') AS patient_id,
    n.hour_start, n.rr, n.spo2, n.sbp, n.pulse, n.temp, n.score_rr, n.score_spo2, n.score_sbp, n.score_pulse,
    n.score_temp, n.total, n.parameters, n.any_three, n.risk, n.updated_at
FROM public.news2_hourly AS n
CROSS JOIN vitalstream_private.pseudonym_key AS k;

CREATE OR REPLACE VIEW analyst.deterioration_alerts WITH (security_barrier) AS
SELECT
    a.alert_id,
    encode(hmac(convert_to(a.patient_id, 'UTF8'), k.key, 'sha256'), 'hex') AS patient_id,
    a.hour_start, a.risk, a.total, a.raised_at, a.published_at, a.score_rr, a.score_spo2, a.score_sbp,
    a.score_pulse, a.score_temp
FROM public.deterioration_alerts AS a
CROSS JOIN vitalstream_private.pseudonym_key AS k;

CREATE OR REPLACE VIEW analyst.daily_patient_summary WITH (security_barrier) AS
SELECT
    encode(hmac(convert_to(s.patient_id, 'UTF8'), k.key, 'sha256'), 'hex') AS patient_id,
    s.day, s.metric, s.readings, s.min_value, s.max_value, s.avg_value, s.quarantined, s.max_news2
FROM public.daily_patient_summary AS s
CROSS JOIN vitalstream_private.pseudonym_key AS k;

CREATE OR REPLACE VIEW analyst.census_daily AS
SELECT day, encounter_type, patients_in_house FROM public.census_daily;

CREATE OR REPLACE VIEW analyst.avg_vitals_by_diagnosis AS
SELECT primary_dx, metric, patients, readings, avg_value FROM public.avg_vitals_by_diagnosis;

CREATE OR REPLACE VIEW analyst.claims_denial_rate_monthly AS
SELECT month, denial_reason, claim_lines, denied_lines, denial_rate FROM public.claims_denial_rate_monthly;

CREATE OR REPLACE VIEW analyst.readmissions_30d WITH (security_barrier) AS
SELECT
    encode(hmac(convert_to(r.patient_id, 'UTF8'), k.key, 'sha256'), 'hex') AS patient_id,
    r.encounter_id, r.discharge_at, r.readmission_encounter_id, r.days_to_readmission
FROM public.readmissions_30d AS r
CROSS JOIN vitalstream_private.pseudonym_key AS k;
