-- Grants (CONTRACT §10). Re-applied after every DDL run, so tables added later (e.g. by a newer release) are
-- covered; the default privileges cover tables the owner creates in between.
GRANT USAGE ON SCHEMA public TO vitalstream_loader, vitalstream_clinical;

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO vitalstream_loader;

GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO vitalstream_loader;

ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO vitalstream_loader;

ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO vitalstream_loader;

GRANT SELECT ON ALL TABLES IN SCHEMA public TO vitalstream_clinical;

ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO vitalstream_clinical;

GRANT USAGE ON SCHEMA analyst TO vitalstream_analyst, vitalstream_clinical;

GRANT SELECT ON ALL TABLES IN SCHEMA analyst TO vitalstream_analyst, vitalstream_clinical;

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM vitalstream_analyst;

REVOKE ALL ON SCHEMA vitalstream_private FROM vitalstream_loader, vitalstream_clinical, vitalstream_analyst;
