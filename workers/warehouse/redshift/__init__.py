"""Redshift loaders through the Data API: ``vitals`` and ``files`` (SQL in ``file_sql``), sharing the statement
runner and URL parsing of ``client``."""
