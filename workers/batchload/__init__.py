"""Batch-file loading for the ``ehr`` and ``claims`` pipelines: lake keys and Parquet writes, warehouse SQL and
the PostgreSQL loader (one transaction per batch: staging COPY, SCD2 / upserts, quarantine replace, audit),
and the generic per-file :class:`~workers.batchload.handler.FileBatchHandler`."""
