-- Grants (CONTRACT §10), Redshift. Idempotent: re-applied after every DDL run.
-- Querying a view needs SELECT on the view and USAGE on the schemas of the tables it reads (not SELECT on
-- them), so the analyst gets USAGE on public and vitalstream_private and SELECT on nothing there: every
-- public table, view and materialized view is refused, and so is the key.
GRANT USAGE ON SCHEMA public TO ROLE vitalstream_loader, ROLE vitalstream_clinical, ROLE vitalstream_analyst;

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ROLE vitalstream_loader;

ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ROLE vitalstream_loader;

GRANT SELECT ON ALL TABLES IN SCHEMA public TO ROLE vitalstream_clinical;

ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO ROLE vitalstream_clinical;

GRANT USAGE ON SCHEMA analyst TO ROLE vitalstream_analyst, ROLE vitalstream_clinical;

GRANT SELECT ON ALL TABLES IN SCHEMA analyst TO ROLE vitalstream_analyst, ROLE vitalstream_clinical;

GRANT USAGE ON SCHEMA vitalstream_private TO ROLE vitalstream_analyst, ROLE vitalstream_clinical;

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM ROLE vitalstream_analyst;

REVOKE ALL ON ALL TABLES IN SCHEMA vitalstream_private FROM PUBLIC;
