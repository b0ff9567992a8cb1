"""Sinks: where batches go (S3 zones, manifests). One sink never imports another; ``layout`` and ``files_layout``
are pure."""
