"""Stand-ins for the tests and benchmarks of several packages; no product code imports this."""
