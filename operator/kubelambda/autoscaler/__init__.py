"""The autoscaler: decides how many instances each function needs; the only writer of that count."""
