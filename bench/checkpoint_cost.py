"""What a checkpoint costs: file size, write and read time, against the run it protects.

    python -m carbonsched.bench.checkpoint_cost [PRESET] [SECONDS]

Runs the Lagrangian and Benders on a generated preset (default ``small``, seed 1) for SECONDS (default
60) with a checkpoint every 5 s, then writes and reads the last checkpoint again five times and prints
medians. The write happens at a trace row, inside the run: its median times the number of checkpoints,
over the run's time, is the share of the run spent checkpointing at that interval.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

from carbonsched.decomp.benders import solve_benders
from carbonsched.decomp.checkpoint import load_checkpoint, save_checkpoint
from carbonsched.decomp.lagrangian import solve_lagrangian
from carbonsched.instances.generator import generate

EVERY = 5.0
REPEATS = 5


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    preset = argv[0] if argv else "small"
    seconds = float(argv[1]) if len(argv) > 1 else 60.0
    inst = generate(preset, seed=1)
    print(f"{inst.name}: S={inst.n_sites} T={inst.n_periods} J={inst.n_jobs} K={inst.n_classes}, "
          f"{seconds:g} s per method, a checkpoint every {EVERY:g} s")
    print("| method | run s | checkpoints | file MB | write ms (median) | read ms (median) | share of the run |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name, solve in (("lagrangian", solve_lagrangian), ("benders", solve_benders)):
            path = os.path.join(folder, f"{name}.h5")
            start = time.perf_counter()
            sol = solve(inst, time_limit=seconds, checkpoint=path, checkpoint_every=EVERY)
            run = time.perf_counter() - start
            writes, reads = [], []
            for _ in range(REPEATS):
                t = time.perf_counter()
                ckpt = load_checkpoint(path)
                reads.append(time.perf_counter() - t)
                t = time.perf_counter()
                save_checkpoint(path, ckpt)
                writes.append(time.perf_counter() - t)
            count = int(sol.extra["checkpoints_written"])
            write = statistics.median(writes)
            print(f"| {name} | {run:.1f} | {count} | {os.path.getsize(path) / 1e6:.2f} | {1e3 * write:.0f} | "
                  f"{1e3 * statistics.median(reads):.0f} | {count * write / run:.2%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
