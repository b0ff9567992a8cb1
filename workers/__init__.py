"""Pipeline workers: ``runtime/`` (engine), ``sources/``, ``stages/``, ``sinks/``, ``pipelines/`` (composition)."""
