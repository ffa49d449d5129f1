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


#: Statuses that prove a solve finished its job (optimal, or within the requested gap).
PROVEN = ("optimal", "gap_limit")


def _money(value: float) -> str:
    """Dollars with thousands separators; ``-`` for a missing (infinite or NaN) figure, never ``-0``."""
    if not math.isfinite(value):
        return "-"
    text = f"{value:,.0f}"
    return "0" if text == "-0" else text


def _percent(value: float, signed: bool = False) -> str:
    """A ratio as a percentage; ``-`` when not finite, and no ``-0.00%``."""
    if not math.isfinite(value):
        return "-"
    text = f"{100 * value:{'+' if signed else ''}.2f}%"
    return "0.00%" if text.lstrip("+-") == "0.00%" else text


def unproven(results: dict[str, Solution]) -> dict[str, bool]:
    """Strategy name -> True when its difference to joint is not proven by the solves behind it.

    A difference is proven when both solves finished (status optimal or gap_limit). When joint stopped at
    a limit, its optimum may lie anywhere up to its bound; when the other strategy stopped at a limit, its
    own best plan may be better than the one shown.
    """
    joint = results.get("joint")
    joint_open = joint is not None and joint.status.value not in PROVEN
    return {name: name != "joint" and (joint_open or sol.status.value not in PROVEN) for name, sol in results.items()}


def format_comparison(inst: Instance, results: dict[str, Solution]) -> str:
    """One table: status, Z, bound and gap, each breakdown term, emissions, budget use and dZ against joint.

    A ``*`` after dZ marks a comparison that a limit left unproven (:func:`unproven`); footnote lines
    below the table name the solves that stopped at a limit, and the room joint's bound leaves.
    """
    cols = (["strategy", "status", "Z $", "bound $", "gap"] + [SHORT[t] for t in BREAKDOWN_TERMS]
            + ["CO2 t", "budget", "dZ vs joint"])
    joint = results.get("joint")
    budget = inst.carbon_budget_t
    marks = unproven(results)
    rows = []
    for name, sol in results.items():
        use = f"{100 * sol.emissions_t / budget:.1f}%" if math.isfinite(budget) and budget > 0 else "-"
        delta = "-"
        if joint is not None and name != "joint":
            delta = _percent((sol.objective - joint.objective) / max(1.0, abs(joint.objective)), signed=True)
            delta += "*" if marks[name] else " "
        gap = sol.gap if not (math.isfinite(sol.gap) and -1e-9 < sol.gap < 0) else 0.0
        rows.append([name, sol.status.value, _money(sol.objective), _money(sol.bound), _percent(gap)]
                    + [_money(sol.breakdown[t]) for t in BREAKDOWN_TERMS]
                    + [f"{sol.emissions_t:,.1f}", use, delta])
    widths = [max(len(str(r[c])) for r in [cols, *rows]) for c in range(len(cols))]
    left = {0, 1}

    def fmt(row: list[str]) -> str:
        return "  ".join(v.ljust(w) if c in left else v.rjust(w)
                         for c, (v, w) in enumerate(zip(row, widths, strict=True))).rstrip()

    lines = [fmt(cols), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]
    lines.append("bound $ and gap: proven by the solve itself (joint only; a baseline or ablation solves a "
                 "changed model, so it proves no bound on Z)")
    if any(marks.values()):
        stopped = [n for n, s in results.items() if s.status.value not in PROVEN]
        note = f"* unproven: {', '.join(stopped)} stopped at a limit"
        if joint is not None and joint.status.value not in PROVEN:
            note += (f"; joint's optimum may be up to {_money(joint.bound)} $ (gap {_percent(joint.gap)}), "
                     "so a dZ shows only a difference of the plans found")
        lines.append(note)
    return "\n".join(lines)
