-- Roles of CONTRACT §10 (group roles: people and services log in as their own users and are granted one).
--   vitalstream_loader    the workers: read and write the warehouse tables
--   vitalstream_clinical  reads everything (public tables, marts, the analyst schema)
--   vitalstream_analyst   non-clinical: reads the schema analyst only; every relation of public is refused
DO 'BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ''vitalstream_loader'') THEN
        CREATE ROLE vitalstream_loader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ''vitalstream_clinical'') THEN
        CREATE ROLE vitalstream_clinical NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ''vitalstream_analyst'') THEN
        CREATE ROLE vitalstream_analyst NOLOGIN;
    END IF;
END';
