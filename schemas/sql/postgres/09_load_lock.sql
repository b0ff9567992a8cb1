-- The Redshift load lock (see schemas/sql/redshift/09_load_lock.sql); PostgreSQL loads take a per-batch
-- advisory lock instead, the table stays empty and unused here.
CREATE TABLE IF NOT EXISTS load_lock (
    name varchar(32) NOT NULL
);
