"""Batch-file loading for the ``ehr`` and ``claims`` pipelines: lake keys and Parquet writes, warehouse SQL
(PostgreSQL: :mod:`~workers.batchload.sql`; Redshift: :mod:`~workers.batchload.sql_redshift`) and the loaders
(one transaction per batch: staging COPY, SCD2 / upserts, quarantine replace, audit) chosen by
:func:`~workers.batchload.warehouse.open_loader`, and the generic per-file
:class:`~workers.batchload.handler.FileBatchHandler`."""
