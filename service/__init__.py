"""The ingestion gateway (CONTRACT §2): FastAPI app, auth, strict validation, batching Kinesis producer."""
