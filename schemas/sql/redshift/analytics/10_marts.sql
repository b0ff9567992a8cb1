-- The marts of CONTRACT §10 (Redshift). The definitions are those of schemas/sql/postgres/analytics/10_marts.sql,
-- which documents each one precisely; only the spelling differs. Days and months are UTC
-- (CONVERT_TIMEZONE('UTC', …) of the TIMESTAMPTZ columns), whatever the session time zone.
--
-- daily_patient_summary is a materialized view. Redshift has no CREATE MATERIALIZED VIEW IF NOT EXISTS, so a
-- re-applied DDL drops and rebuilds it (CASCADE drops analyst.daily_patient_summary, which 30_analyst.sql
-- recreates). It reads tables only (a Redshift materialized view may not reference standard views, system
-- tables, temporary tables, user-defined functions or leader-node-only functions such as GETDATE). The outer
-- join and UNION ALL make Redshift refresh it in full, which `vitalstream warehouse refresh` does with
-- REFRESH MATERIALIZED VIEW daily_patient_summary (only its owner may: the job runs as the DDL's owner).
-- AUTO REFRESH NO: the schedule (EventBridge → ECS task, or the Kubernetes CronJob) decides when.
DROP MATERIALIZED VIEW IF EXISTS daily_patient_summary CASCADE;

CREATE MATERIALIZED VIEW daily_patient_summary
BACKUP NO
DISTSTYLE KEY
DISTKEY (patient_id)
SORTKEY (day)
AUTO REFRESH NO
AS
SELECT
    r.patient_id,
    r.day,
    r.metric,
    COUNT(r.value) AS readings,
    MIN(r.value) AS min_value,
    MAX(r.value) AS max_value,
    AVG(r.value) AS avg_value,
    COUNT(r.q) AS quarantined,
    n.max_news2
FROM (
    SELECT patient_id, CAST(CONVERT_TIMEZONE('UTC', measured_at) AS DATE) AS day, metric, value,
           CAST(NULL AS INTEGER) AS q
    FROM fact_vitals
    UNION ALL
    SELECT patient_id, CAST(CONVERT_TIMEZONE('UTC', measured_at) AS DATE) AS day, metric,
           CAST(NULL AS DOUBLE PRECISION) AS value, 1 AS q
    FROM vitals_quarantine
) AS r
LEFT JOIN (
    SELECT patient_id, CAST(CONVERT_TIMEZONE('UTC', hour_start) AS DATE) AS day, MAX(total) AS max_news2
    FROM news2_hourly
    GROUP BY 1, 2
) AS n ON n.patient_id = r.patient_id AND n.day = r.day
GROUP BY r.patient_id, r.day, r.metric, n.max_news2;

-- census_daily: generate_series runs on the leader node only in Redshift, so the days come from a digits
-- cross join (0 … 99,999 days after the earliest admission, cut at today).
CREATE OR REPLACE VIEW census_daily AS
WITH digits AS (
    SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4
    UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9
),
bounds AS (
    SELECT
        CAST(MIN(CONVERT_TIMEZONE('UTC', admit_at)) AS DATE) AS first_day,
        CAST(CONVERT_TIMEZONE('UTC', GETDATE()) AS DATE) AS last_day
    FROM fact_encounters
),
days AS (
    SELECT CAST(DATEADD(day, o.n, b.first_day) AS DATE) AS day
    FROM (
        SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d AS n
        FROM digits AS a CROSS JOIN digits AS b CROSS JOIN digits AS c CROSS JOIN digits AS e CROSS JOIN digits AS f
    ) AS o
    CROSS JOIN bounds AS b
    WHERE o.n <= DATEDIFF(day, b.first_day, b.last_day)
),
types AS (
    SELECT DISTINCT encounter_type FROM fact_encounters
)
SELECT
    d.day,
    t.encounter_type,
    COUNT(DISTINCT e.patient_id) AS patients_in_house
FROM days AS d
CROSS JOIN types AS t
LEFT JOIN fact_encounters AS e
    ON (e.encounter_type = t.encounter_type OR (e.encounter_type IS NULL AND t.encounter_type IS NULL))
    AND CONVERT_TIMEZONE('UTC', e.admit_at) < DATEADD(day, 1, d.day)
    AND (e.discharge_at IS NULL OR CONVERT_TIMEZONE('UTC', e.discharge_at) >= d.day)
GROUP BY d.day, t.encounter_type;

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
    COUNT(DISTINCT patient_id) AS patients,
    COUNT(*) AS readings,
    AVG(value) AS avg_value
FROM matched
GROUP BY primary_dx, metric;

CREATE OR REPLACE VIEW claims_denial_rate_monthly AS
WITH lines AS (
    SELECT CAST(DATE_TRUNC('month', service_date) AS DATE) AS month, status, denial_reason
    FROM fact_claims
),
months AS (
    SELECT month, COUNT(*) AS claim_lines FROM lines GROUP BY month
)
SELECT
    l.month,
    l.denial_reason,
    m.claim_lines,
    COUNT(*) AS denied_lines,
    CAST(COUNT(*) AS DOUBLE PRECISION) / m.claim_lines AS denial_rate
FROM lines AS l
JOIN months AS m ON m.month = l.month
WHERE l.status = 'denied'
GROUP BY l.month, l.denial_reason, m.claim_lines;

CREATE OR REPLACE VIEW readmissions_30d AS
WITH inpatient AS (
    SELECT encounter_id, patient_id, admit_at, discharge_at
    FROM fact_encounters
    WHERE LOWER(encounter_type) IN ('inpatient', 'i', 'imp', 'acute', 'nonac')
),
candidates AS (
    SELECT
        d.patient_id,
        d.encounter_id,
        d.discharge_at,
        r.encounter_id AS readmission_encounter_id,
        DATEDIFF(
            day, CAST(CONVERT_TIMEZONE('UTC', d.discharge_at) AS DATE), CAST(CONVERT_TIMEZONE('UTC', r.admit_at) AS DATE)
        ) AS days_to_readmission,
        ROW_NUMBER() OVER (PARTITION BY d.encounter_id ORDER BY r.admit_at, r.encounter_id) AS rank
    FROM inpatient AS d
    LEFT JOIN inpatient AS r
        ON r.patient_id = d.patient_id
        AND r.encounter_id <> d.encounter_id
        AND r.admit_at > d.discharge_at
        AND DATEDIFF(
            day, CAST(CONVERT_TIMEZONE('UTC', d.discharge_at) AS DATE), CAST(CONVERT_TIMEZONE('UTC', r.admit_at) AS DATE)
        ) <= 30
    WHERE d.discharge_at IS NOT NULL
)
SELECT patient_id, encounter_id, discharge_at, readmission_encounter_id, days_to_readmission
FROM candidates
WHERE rank = 1;
