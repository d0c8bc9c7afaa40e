"""Pure builders: a Function (and the operator's configuration) in, the objects that serve it out.

One module per object; each returns a plain dict ready for server-side apply, and is tested
as data in tests/unit/controller/. Nothing here reads the cluster or the clock.
"""
