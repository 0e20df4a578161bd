"""Hypothesis settings for the property/fuzz tests (`test_*_fuzz.py`).

Deterministic, so CI always runs the same examples: derandomized (seeded from the test
function) and without the example database (nothing carried over between runs); no
deadline, since an example's time depends on the machine. Each test sets its own
`max_examples` on top, small enough that all the fuzz tests together run in seconds:

    @settings(FUZZ, max_examples=200)
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    # Streams and bodies are large examples by design: do not fail on their size.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
