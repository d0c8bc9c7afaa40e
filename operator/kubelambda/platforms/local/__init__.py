"""Local mode: the whole data path on one machine, functions run as local processes."""
