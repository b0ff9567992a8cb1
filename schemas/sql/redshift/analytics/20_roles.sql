-- Roles of CONTRACT §10 (Redshift role-based access control). Redshift has no CREATE ROLE IF NOT EXISTS: this
-- file runs once per database (deploy/README.md); the other files are safe to re-apply.
--   vitalstream_loader    the workers (their IAM identities, e.g. IAMR:<Name>-worker, are granted it)
--   vitalstream_clinical  reads everything
--   vitalstream_analyst   reads the schema analyst only
CREATE ROLE vitalstream_loader;

CREATE ROLE vitalstream_clinical;

CREATE ROLE vitalstream_analyst;
