"""The engine every pipeline runs on: runner, flush policy, backoff, shutdown, metrics, interfaces."""
