"""Schedule Triggers' ticks, fired as asynchronous invocations (ticks.py)."""
