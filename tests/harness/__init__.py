"""The test harness's real parts: binaries built from registries, and the servers made of them.

Tests import it as `harness` (tests/ on sys.path); everything it builds is cached under
`${KUBELAMBDA_CACHE:-~/.cache/kubelambda}`, never in the checkout.
"""
