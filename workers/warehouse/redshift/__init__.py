"""Redshift loaders through the Data API: ``vitals`` and ``files`` (SQL in ``file_sql``), sharing the statement
runner and URL parsing of ``client``; ``news2`` adds the NEWS2 recompute to a vitals batch and reads/marks the
alert outbox."""
