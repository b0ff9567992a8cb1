-- Redshift Spectrum over the lake (CONTRACT §10): the Glue Data Catalog database VITALSTREAM_GLUE_DATABASE
-- (CloudFormation's GlueDatabase, default `vitalstream`) as the external schema `lake`, so that
-- lake.vitals_processed, lake.vitals_quarantine, lake.ehr_patients, lake.ehr_encounters and lake.claims are
-- queryable with the partitions the workers register after each commit (no crawler). IAM_ROLE default: the
-- namespace's default role (RedshiftCopyRole), which may read the catalog and the processed/quarantine zones.
-- Only clinical users read the lake (it holds raw ids); the analyst gets nothing here.
CREATE EXTERNAL SCHEMA IF NOT EXISTS lake
FROM DATA CATALOG
DATABASE 'vitalstream'
IAM_ROLE default;

GRANT USAGE ON SCHEMA lake TO ROLE vitalstream_clinical;
