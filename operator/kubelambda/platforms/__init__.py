"""Adapters that implement the components' interfaces on a real platform: `kubernetes` (the only
code that talks to the API server), `local` (runtime processes on this machine) and `s3`
(bucket notification configurations on an S3 server). They are independent of each other.
"""
