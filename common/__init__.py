"""Shared by gateway and workers: settings, AWS clients, errors, metrics, logging."""
