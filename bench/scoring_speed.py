"""Exact scoring of a plan: the one joint energy MILP against the carbon-price search, in-process and on workers.

For each size (``generate(sites=S, periods=24, seed=0)``, the generator's own carbon budget, which binds
for the energy-only plan at every size measured) the energy-only plan is scored three times, side by side
in one run: ``evaluate(..., exact_joint=True)`` (one MILP over all sites), ``evaluate`` in this process
(the price search, sites one after another) and ``evaluate`` on a pool of ``--jobs`` loky workers. Each
result goes through the checker. Prints one markdown table: seconds (median of ``--repeat`` runs; on the
pool, the first call, which starts the workers and builds their site models, is shown apart from the
later calls, which re-use them), price-search rounds, per-site solves, what
proved the value, the certificate gap and the objective difference to the joint MILP.

    python -m carbonsched.bench.scoring_speed --sites 10 30 100 --jobs 2 --repeat 1

``--stats`` instead counts, over presets and seeds (energy-only plan; the preset's budget and one at 70 %
of the unconstrained dispatch's emissions), what proved each score: the price search alone, the repair
or the joint fallback, with the gap the price search alone left, in-process:

    python -m carbonsched.bench.scoring_speed --stats --presets paper small medium --seeds 5
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from collections import Counter

from carbonsched.decomp.parallel import ParallelConfig, SitePool
from carbonsched.formulations.baselines import energy_only_plan
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.energy import it_power_mw
from carbonsched.formulations.evaluate import evaluate, score_with_carbon_price
from carbonsched.instances.generator import generate


def _timed(fn, repeat: int):
    times, sol = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        sol = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), sol


def stats(presets: list[str], seeds: int) -> None:
    """Print how each energy-only plan's score was proven, per preset and budget (markdown)."""
    print("| preset | budget | instances | price search alone exact | its gap $ (median, max) | its relative gap "
          "(max) | its rounds (median) | default: proved by repair | joint fallback | default rounds (median) "
          "| max abs(Z − Z_joint) $ |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for preset in presets:
        for budget in ("preset", "70%"):
            count: Counter = Counter()
            gaps, rel, rounds, diffs, alone_rounds, alone = [], [], [], [], [], 0
            for seed in range(seeds):
                inst = generate(preset, seed=seed)
                plan = energy_only_plan(inst)
                if budget == "70%":
                    free = evaluate(dataclasses.replace(inst, carbon_budget_t=math.inf), plan)
                    inst = dataclasses.replace(inst, carbon_budget_t=round(0.7 * free.emissions_t, 3))
                sol = evaluate(inst, plan)
                ref = evaluate(inst, plan, exact_joint=True)
                for label, s in (("price", sol), ("joint", ref)):
                    if not check_solution(inst, s).ok:
                        raise SystemExit(f"{preset} seed {seed} ({label}) fails the checker")
                ex = sol.extra
                count[ex["scoring"]] += 1
                rounds.append(ex["price_rounds"])
                # the price search alone, run until it cannot lower the bound (no early hand-over, no repair)
                search = score_with_carbon_price(inst, it_power_mw(inst, plan.busy_gpus(inst)), repair_sites=0,
                                                 joint_fallback=False)
                alone += search.method in ("separable", "price")
                alone_rounds.append(search.rounds)
                gaps.append(search.search_gap)
                rel.append(search.search_gap / max(1.0, abs(ref.objective)))
                diffs.append(abs(sol.objective - ref.objective))
            print(f"| {preset} | {budget} | {seeds} | {alone} ({count['separable']} separable) "
                  f"| {statistics.median(gaps):.3g}, {max(gaps):.3g} | {max(rel):.2g} "
                  f"| {statistics.median(alone_rounds):g} | {count['repair']} | {count['joint']} "
                  f"| {statistics.median(rounds):g} | {max(diffs):.2g} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, nargs="+", default=[10, 30, 100])
    ap.add_argument("--periods", type=int, default=24)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stats", action="store_true", help="count what proved each score instead of timing")
    ap.add_argument("--presets", nargs="+", default=["paper", "small", "medium"])
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args(argv)
    if args.stats:
        stats(args.presets, args.seeds)
        return 0
    print("| sites | method | seconds | ratio to joint | rounds | site solves | proved by | certificate gap $ "
          "| Z − Z_joint $ |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.sites:
        inst = generate(sites=n, periods=args.periods, seed=args.seed)
        plan = energy_only_plan(inst)
        rows = []
        t_joint, ref = _timed(lambda: evaluate(inst, plan, exact_joint=True), args.repeat)  # noqa: B023
        rows.append(("joint MILP", t_joint, ref))
        t_one, one = _timed(lambda: evaluate(inst, plan), args.repeat)  # noqa: B023
        rows.append(("price search, in-process", t_one, one))
        with SitePool(inst, ParallelConfig(n_jobs=args.jobs)) as pool:
            t_cold, cold = _timed(lambda: evaluate(inst, plan, pool=pool), 1)  # noqa: B023
            t_pool, par = _timed(lambda: evaluate(inst, plan, pool=pool), args.repeat)  # noqa: B023
        rows.append((f"price search, {args.jobs} workers, first call", t_cold, cold))
        rows.append((f"price search, {args.jobs} workers, models kept", t_pool, par))
        for label, secs, sol in rows:
            report = check_solution(inst, sol)
            if not report.ok:
                raise SystemExit(f"{label} at {n} sites fails the checker: {report}")
            ex = sol.extra
            print(f"| {n} | {label} | {secs:.2f} | {secs / t_joint:.2f} | {ex.get('price_rounds', '')} "
                  f"| {ex.get('site_solves', '')} | {ex['scoring']}{' (exact)' if ex['proven_exact'] else ''} "
                  f"| {ex['certificate_gap']:.2g} | {sol.objective - ref.objective:.2g} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
