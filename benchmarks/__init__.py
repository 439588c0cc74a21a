"""Benchmarks for painterly, kept out of the test suite: ``python -m benchmarks.speed`` writes BENCHMARKS.md.

A benchmark owns its process, so it sets what the ``painterly`` command sets for its own:
deterministic MKL kernels (before torch first runs MKL), the same conditions as the CLI's runs.
"""

import os

os.environ.setdefault("MKL_CBWR", "AUTO")
