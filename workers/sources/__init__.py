"""Sources: where batches come from (``kinesis``, ``s3_events``). One source never imports another."""
