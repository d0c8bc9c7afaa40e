"""The autoscaler: decides how many instances each function needs, and is the only writer of that number."""
