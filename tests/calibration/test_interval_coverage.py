"""Coverage of nominal 95% intervals by simulation (slow: run with `pytest -m slow`).

Each row of `benchmarks.coverage_table.ROWS` simulates 2,000 seeded data sets in a regime
where theory says the method holds (or, for Wald at small n, where it is known to fail) and is
checked with a binomial test; see that module's docstring for the three kinds of check. The
published table is docs/coverage.md.
"""

import pytest

from revstats.calibration._coverage import ROWS, check

N_SETS = 2000


@pytest.mark.slow
@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_coverage(row):
    hits = row.run(N_SETS, row.seed)
    ok, p = check(row, hits, N_SETS)
    assert ok, f"{row.name}: coverage {hits / N_SETS:.4f} ({row.expect}), binomial p = {p:.3g}"
