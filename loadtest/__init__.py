"""Load generation: the simulated device fleet and the locustfile built on it."""
