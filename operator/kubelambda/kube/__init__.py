"""Every call to the Kubernetes API goes through this package."""
