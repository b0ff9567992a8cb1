"""Data contracts of vitalstream: metric catalogue, wire models, envelope, Arrow schemas, warehouse DDL."""
