-- The marts of CONTRACT §10 (PostgreSQL). Applied after the tables; every statement is idempotent.
-- Days and months are UTC calendar days/months, whatever the session time zone.

-- daily_patient_summary: one row per (patient_id, UTC day of measured_at, metric) that has at least one
-- reading in fact_vitals or in vitals_quarantine.
--   readings    rows of fact_vitals of that patient, day and metric (0 when all of them were quarantined)
--   min_value, max_value, avg_value   over those fact_vitals rows only (null when readings = 0)
--   quarantined rows of vitals_quarantine of that patient, day and metric (any reason)
--   max_news2   the highest news2_hourly.total of that patient among the hours starting on that day (null when
--               the patient has no NEWS2 row that day); the same on every metric row of the patient-day
-- Readings without a patient_id form their own group (patient_id null). Materialized: refreshed by
-- `vitalstream warehouse refresh` with REFRESH MATERIALIZED VIEW CONCURRENTLY (the unique index below), which
-- readers and loading workers never wait for.
CREATE MATERIALIZED VIEW IF NOT EXISTS daily_patient_summary AS
SELECT
    r.patient_id,
    r.day,
    r.metric,
    count(r.value)::bigint AS readings,
    min(r.value)           AS min_value,
    max(r.value)           AS max_value,
    avg(r.value)           AS avg_value,
    count(r.q)::bigint     AS quarantined,
    n.max_news2
FROM (
    SELECT patient_id, (measured_at AT TIME ZONE 'UTC')::date AS day, metric, value, NULL::integer AS q
    FROM fact_vitals
    UNION ALL
    SELECT patient_id, (measured_at AT TIME ZONE 'UTC')::date AS day, metric, NULL::double precision, 1
    FROM vitals_quarantine
) AS r
LEFT JOIN (
    SELECT patient_id, (hour_start AT TIME ZONE 'UTC')::date AS day, max(total) AS max_news2
    FROM news2_hourly
    GROUP BY 1, 2
) AS n ON n.patient_id = r.patient_id AND n.day = r.day
GROUP BY r.patient_id, r.day, r.metric, n.max_news2;

CREATE UNIQUE INDEX IF NOT EXISTS daily_patient_summary_key
    ON daily_patient_summary (patient_id, day, metric) NULLS NOT DISTINCT;

-- census_daily: one row per (UTC day, encounter_type) for every day from the UTC day of the earliest
-- admit_at in fact_encounters to today (UTC) and every encounter_type present (null type included), zeros too.
--   patients_in_house  distinct patient_id with an encounter of that type that is in house on that day:
--                      admit_at < the day's end (next midnight UTC) and (discharge_at is null or
--                      discharge_at >= the day's start (midnight UTC)). A patient discharged at 10:00 and
--                      readmitted at 14:00 counts once; an encounter without discharge counts every day to today.
CREATE OR REPLACE VIEW census_daily AS
WITH days AS (
    SELECT generate_series(
        (SELECT (min(admit_at) AT TIME ZONE 'UTC')::date FROM fact_encounters),
        (now() AT TIME ZONE 'UTC')::date,
        interval '1 day'
    )::date AS day
),
types AS (
    SELECT DISTINCT encounter_type FROM fact_encounters
)
SELECT
    d.day,
    t.encounter_type,
    count(DISTINCT e.patient_id)::bigint AS patients_in_house
FROM days AS d
CROSS JOIN types AS t
LEFT JOIN fact_encounters AS e
    ON e.encounter_type IS NOT DISTINCT FROM t.encounter_type
    AND e.admit_at < ((d.day + 1)::timestamp AT TIME ZONE 'UTC')
    AND (e.discharge_at IS NULL OR e.discharge_at >= (d.day::timestamp AT TIME ZONE 'UTC'))
GROUP BY d.day, t.encounter_type;

-- avg_vitals_by_diagnosis: one row per (primary_dx, metric) with at least one reading.
-- A reading of fact_vitals belongs to an encounter of the same patient_id when
-- admit_at <= measured_at and (discharge_at is null or measured_at <= discharge_at) (both ends inclusive;
-- an encounter without discharge takes every later reading). Encounters without primary_dx and readings
-- outside every encounter are left out. A reading inside two encounters with the same diagnosis counts once
-- for it; inside encounters with different diagnoses it counts for each.
--   patients   distinct patient_id of those readings;  readings  their number;  avg_value  their mean value
CREATE OR REPLACE VIEW avg_vitals_by_diagnosis AS
WITH matched AS (
    SELECT DISTINCT e.primary_dx, v.device_id, v.metric, v.measured_at, v.patient_id, v.value
    FROM fact_vitals AS v
    JOIN fact_encounters AS e
        ON e.patient_id = v.patient_id
        AND v.measured_at >= e.admit_at
        AND (e.discharge_at IS NULL OR v.measured_at <= e.discharge_at)
    WHERE e.primary_dx IS NOT NULL
)
SELECT
    primary_dx,
    metric,
    count(DISTINCT patient_id)::bigint AS patients,
    count(*)::bigint                   AS readings,
    avg(value)                         AS avg_value
FROM matched
GROUP BY primary_dx, metric;

-- claims_denial_rate_monthly: one row per (month of service_date, denial_reason) among lines denied that month.
-- A claim line is (claim_id, line_number) and counts once, by its current status in fact_claims: a later file
-- replaces the line, so a line denied then paid (or a denial reversed on appeal) counts as served and not
-- denied; a line paid then reversed and denied counts as denied.
--   month         first day of the UTC month of service_date
--   claim_lines   every line with service_date in that month, any status (the same on every row of the month)
--   denied_lines  lines of the month with status 'denied' and that denial_reason (null reason: its own row)
--   denial_rate   denied_lines / claim_lines, a fraction in [0, 1]
-- Months without a denied line have no row.
CREATE OR REPLACE VIEW claims_denial_rate_monthly AS
WITH lines AS (
    SELECT date_trunc('month', service_date)::date AS month, status, denial_reason
    FROM fact_claims
),
months AS (
    SELECT month, count(*)::bigint AS claim_lines FROM lines GROUP BY month
)
SELECT
    l.month,
    l.denial_reason,
    m.claim_lines,
    count(*)::bigint                                     AS denied_lines,
    count(*)::double precision / m.claim_lines           AS denial_rate
FROM lines AS l
JOIN months AS m ON m.month = l.month
WHERE l.status = 'denied'
GROUP BY l.month, l.denial_reason, m.claim_lines;

-- readmissions_30d: one row per inpatient discharge (an inpatient encounter with discharge_at set).
-- Inpatient: lower(encounter_type) in ('inpatient', 'i', 'imp', 'acute', 'nonac') (the CSV word, HL7 v2 PV1-2
-- class I, FHIR v3-ActCode IMP/ACUTE/NONAC).
-- The readmission is the first (earliest admit_at, then encounter_id) other inpatient encounter of the same
-- patient admitted after the discharge (admit_at > discharge_at) whose UTC admission day is at most 30 days
-- after the UTC discharge day: readmitted on day 30 counts, on day 31 does not (the discharge day is day 0).
--   days_to_readmission  UTC admission day - UTC discharge day (0..30); null with readmission_encounter_id
--                        when there is no readmission.
CREATE OR REPLACE VIEW readmissions_30d AS
WITH inpatient AS (
    SELECT encounter_id, patient_id, admit_at, discharge_at
    FROM fact_encounters
    WHERE lower(encounter_type) IN ('inpatient', 'i', 'imp', 'acute', 'nonac')
),
candidates AS (
    SELECT
        d.patient_id,
        d.encounter_id,
        d.discharge_at,
        r.encounter_id AS readmission_encounter_id,
        (r.admit_at AT TIME ZONE 'UTC')::date - (d.discharge_at AT TIME ZONE 'UTC')::date AS days_to_readmission,
        row_number() OVER (PARTITION BY d.encounter_id ORDER BY r.admit_at, r.encounter_id) AS rank
    FROM inpatient AS d
    LEFT JOIN inpatient AS r
        ON r.patient_id = d.patient_id
        AND r.encounter_id <> d.encounter_id
        AND r.admit_at > d.discharge_at
        AND (r.admit_at AT TIME ZONE 'UTC')::date <= (d.discharge_at AT TIME ZONE 'UTC')::date + 30
    WHERE d.discharge_at IS NOT NULL
)
SELECT patient_id, encounter_id, discharge_at, readmission_encounter_id, days_to_readmission
FROM candidates
WHERE rank = 1;
