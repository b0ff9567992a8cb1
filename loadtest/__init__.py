"""Load and fault campaigns: the simulated device fleet, the ground truth, the reconciliation, the locustfile
and the chaos scenarios (see README.md)."""
