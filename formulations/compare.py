"""Running all strategies of MODEL.md on one instance and tabulating them."""

from __future__ import annotations

import math
from collections.abc import Callable

from carbonsched.instances.schema import Instance

from .baselines import STRATEGIES, run_strategy
from .fields import BREAKDOWN_TERMS
from .solution import Solution

SHORT = {
    "training_value": "train",
    "inference_revenue": "infer",
    "latency_cost": "latency",
    "unserved_penalty": "unserved",
    "grid_cost": "grid",
    "export_revenue": "export",
    "gen_cost": "gen",
    "startup_cost": "startup",
    "battery_cost": "battery",
    "ens_cost": "ens",
    "carbon_cost": "carbon",
}


def run_comparison(inst: Instance, *, strategies=STRATEGIES, time_limit: float | None = None,
                   gap: float | None = 1e-6, on_done: Callable[[str, Solution], None] | None = None
                   ) -> dict[str, Solution]:
    """Each strategy's solution, scored on ``inst``, by strategy name (in MODEL.md's order)."""
    out = {}
    for name in strategies:
        out[name] = run_strategy(inst, name, time_limit=time_limit, gap=gap)
        if on_done is not None:
            on_done(name, out[name])
    return out


def _money(value: float) -> str:
    text = f"{value:,.0f}"
    return "0" if text == "-0" else text


def format_comparison(inst: Instance, results: dict[str, Solution]) -> str:
    """One table: Z, each breakdown term, emissions, budget use and the change of Z against joint."""
    cols = ["strategy", "Z $"] + [SHORT[t] for t in BREAKDOWN_TERMS] + ["CO2 t", "budget", "dZ vs joint"]
    joint = results.get("joint")
    budget = inst.carbon_budget_t
    rows = []
    for name, sol in results.items():
        use = f"{100 * sol.emissions_t / budget:.1f}%" if math.isfinite(budget) and budget > 0 else "-"
        delta = "-"
        if joint is not None and name != "joint":
            delta = f"{100 * (sol.objective - joint.objective) / max(1.0, abs(joint.objective)):+.2f}%"
        rows.append([name, _money(sol.objective)] + [_money(sol.breakdown[t]) for t in BREAKDOWN_TERMS]
                    + [f"{sol.emissions_t:,.1f}", use, delta])
    widths = [max(len(str(r[c])) for r in [cols, *rows]) for c in range(len(cols))]

    def fmt(row: list[str]) -> str:
        return "  ".join(v.rjust(w) if c else v.ljust(w) for c, (v, w) in enumerate(zip(row, widths, strict=True)))

    return "\n".join([fmt(cols), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])
