"""PostgreSQL loaders (asyncpg): ``vitals`` (binary COPY + MERGE of the vitals batches) and ``files`` (the ehr
and claims batches, SQL in ``file_sql``); ``news2`` (the NEWS2 recompute in a vitals batch's transaction and
the alert outbox)."""
