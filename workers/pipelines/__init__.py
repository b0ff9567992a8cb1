"""Pipelines compose a source, stages and sinks; ``registry`` maps a pipeline name to its builder."""
