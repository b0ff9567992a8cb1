-- The load lock: the first statement of every warehouse load on Redshift is LOCK load_lock (ACCESS EXCLUSIVE
-- until commit), so loads of the vitals and batch pipelines run one at a time. Nobody reads this table, so the
-- lock blocks no reader (UNIQUE is informational in Redshift and SNAPSHOT isolation lets two loads of one batch
-- both pass the NOT EXISTS guards; SERIALIZABLE would abort one of two concurrent loads instead).
CREATE TABLE IF NOT EXISTS load_lock (
    name VARCHAR(32) NOT NULL ENCODE RAW
)
DISTSTYLE ALL;
