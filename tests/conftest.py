import os

# Keep BLAS single-threaded in tests: the suite runs under pytest-xdist on a 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
