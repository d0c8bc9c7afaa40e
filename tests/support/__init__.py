"""Helpers shared by the tests: free ports, waiting for a condition with a deadline, processes."""
