"""The warehouse: :func:`~workers.warehouse.open.open_loader` turns ``VITALSTREAM_WAREHOUSE_URL`` into the
loader of a pipeline (``vitals`` or ``files``); each dialect's loaders live side by side in
:mod:`~workers.warehouse.postgres` and :mod:`~workers.warehouse.redshift`.

Shared by both dialects: the loader interfaces (``vitals_types``, ``file_types``), the vitals SQL generator
(``vitals_sql``, dialect-parameterised), the NEWS2 recompute and alert-outbox SQL (``news2_sql``) and the
batch-table specs (``file_tables``).
"""
