"""Settings for the whole suite; pytest loads this before any test module imports numpy."""

from __future__ import annotations

import os

# One thread for PyTorch, NumPy's BLAS and scikit-learn's OpenMP loops, in this process and
# the subprocesses the tests start. The models under test are tiny, and with a thread per
# core their fits spin against anything else on the machine: two `vaekit classify` runs of
# the resume test side by side took 68 s each (10 s alone; 13 s with one thread each), and
# with one single-threaded process busy beside it the suite took 571 s on 2 cores with the
# defaults and 325 s with OMP_NUM_THREADS=1. On the idle machine it gains little (328 s
# against 336 s, run one after the other; 2026-12-07). Setting OMP_NUM_THREADS yourself
# overrides this.
os.environ.setdefault("OMP_NUM_THREADS", "1")
