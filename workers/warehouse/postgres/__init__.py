"""PostgreSQL loaders (asyncpg): ``vitals`` (binary COPY + MERGE of the vitals batches) and ``files`` (the ehr
and claims batches, SQL in ``file_sql``)."""
