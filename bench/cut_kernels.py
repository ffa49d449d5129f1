"""Micro-benchmark of the numba kernels of the Benders cut pool against their numpy references.

    python -m carbonsched.bench.cut_kernels

Both sides run in this process, interleaved, after a warm-up call that compiles the kernels; the
table gives medians and the speed-up numpy / numba.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
from carbonsched.decomp.cuts import (
    busy_coefficients_on_placements,
    busy_coefficients_on_placements_reference,
    cut_values,
    cut_values_reference,
)


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    rng = np.random.default_rng(0)
    print("| kernel | size | numpy s | numba s | speed-up |")
    print("|---|---|---|---|---|")
    for n_sites, n_cuts, T in ((10, 500, 24), (100, 5_000, 24), (100, 20_000, 168)):
        width = 5 * T
        site = rng.integers(0, n_sites, n_cuts)
        const = rng.normal(size=n_cuts)
        # cuts are sparse: U and the binaries of one site, most binaries absent
        coef = rng.normal(size=(n_cuts, width)) * (rng.random((n_cuts, width)) < 0.4)
        point = rng.normal(size=(n_sites, width))
        cut_values(site, const, coef, point)
        ref = _median_time(lambda: cut_values_reference(site, const, coef, point), 7)  # noqa: B023
        fast = _median_time(lambda: cut_values(site, const, coef, point), 7)  # noqa: B023
        print(f"| cut values at a master point | {n_cuts} cuts, {n_sites} sites, T={T} | {ref:.5f} | {fast:.5f} | "
              f"{ref / fast:.1f}× |")
    for n_sites, n_pl, T in ((10, 5_000, 24), (100, 200_000, 24), (100, 500_000, 168)):
        busy = rng.normal(size=(n_sites, T))
        duration = rng.integers(1, min(T, 24) + 1, n_pl)
        start = (rng.random(n_pl) * (T - duration + 1)).astype(np.int64)
        site = rng.integers(0, n_sites, n_pl)
        gpus = rng.integers(8, 4096, n_pl).astype(np.float64)
        busy_coefficients_on_placements(busy, site, start, duration, gpus)
        ref = _median_time(lambda: busy_coefficients_on_placements_reference(busy, site, start, duration, gpus), 7)  # noqa: B023
        fast = _median_time(lambda: busy_coefficients_on_placements(busy, site, start, duration, gpus), 7)  # noqa: B023
        print(f"| window sums onto placements | {n_pl} placements, T={T} | {ref:.5f} | {fast:.5f} | "
              f"{ref / fast:.1f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
