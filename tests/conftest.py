"""Settings for the whole suite; pytest loads this before any test module imports numpy."""

from __future__ import annotations

import os

# One thread for PyTorch, NumPy's BLAS and scikit-learn's OpenMP loops, in this process and
# the subprocesses the tests start. The models under test are tiny, and some tests run
# beside vaekit subprocesses: with a thread per core, fits spent more time handing work
# between threads, and spinning against those processes, than computing. On an idle 2-core
# machine the suite took 354 s with the defaults and 281 s with OMP_NUM_THREADS=1
# (2026-12-07). Setting OMP_NUM_THREADS yourself overrides this.
os.environ.setdefault("OMP_NUM_THREADS", "1")
