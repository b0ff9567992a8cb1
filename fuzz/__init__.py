"""Coverage-guided fuzzing of the gateway's C fast path (``service/_fastpath.c``): see ``make fuzz``."""
