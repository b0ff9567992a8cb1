"""Warehouse loaders (PostgreSQL, Redshift Data API) behind one interface, sharing ``sql``."""
