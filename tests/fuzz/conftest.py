"""Hypothesis profiles for the parser fuzzers.

`ci` (the default) is derandomized and bounded so the whole fuzz directory runs in about a minute;
`deep` explores more: `CERTFLEET_FUZZ_PROFILE=deep uv run pytest tests/fuzz`.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": timedelta(seconds=5),  # per example: a hang fails the run, a slow machine does not
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "database": None,
}
settings.register_profile("ci", max_examples=150, derandomize=True, **_COMMON)
settings.register_profile("deep", max_examples=5000, **_COMMON)
settings.load_profile(os.environ.get("CERTFLEET_FUZZ_PROFILE", "ci"))
