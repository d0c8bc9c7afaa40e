"""Hypothesis profiles of the fuzz tests: `fuzz` (the default run: 200 examples per property,
derandomized so CI sees the same inputs each time) and `long` (many more, seeded at random).

Choose the long run with `KUBELAMBDA_FUZZ=long`, or `--hypothesis-profile=long` when
tests/fuzz is named on the command line (its conftest is then loaded before the option is
read); `KUBELAMBDA_FUZZ_EXAMPLES` sets the long run's count (default 5,000).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "fuzz",
    max_examples=200,
    derandomize=True,
    deadline=None,
    database=None,  # nothing written into the checkout
    suppress_health_check=_QUIET,
    print_blob=True,
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("KUBELAMBDA_FUZZ_EXAMPLES", "5000")),
    derandomize=False,
    deadline=None,
    database=None,
    suppress_health_check=_QUIET,
    print_blob=True,
)

if os.environ.get("KUBELAMBDA_FUZZ") == "long":
    settings.load_profile("long")
elif settings.get_current_profile_name() == "default":
    settings.load_profile("fuzz")
