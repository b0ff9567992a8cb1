-- CONTRACT §7 (HIPAA Safe Harbor): dim_patient.postal_code holds at most the first three digits of a US ZIP
-- code, and '000' for the restricted three-digit areas; anything else (other countries' codes) is dropped.
-- Rows written before the rule are migrated in place (every version: the rule applies to history too).
-- Idempotent: a migrated value is already three digits outside the restricted list, '000', or NULL.
UPDATE dim_patient
SET postal_code = CASE
    WHEN postal_code !~ '^[0-9]{3}([0-9]{2}(-?[0-9]{4})?)?$' THEN NULL
    WHEN substring(postal_code from 1 for 3) IN ('036', '059', '063', '102', '203', '556', '692', '790', '821', '823', '830', '831', '878', '879', '884', '890', '893') THEN '000'
    ELSE substring(postal_code from 1 for 3)
END
WHERE postal_code IS NOT NULL
  AND (postal_code !~ '^[0-9]{3}$' OR postal_code IN ('036', '059', '063', '102', '203', '556', '692', '790', '821', '823', '830', '831', '878', '879', '884', '890', '893'));
