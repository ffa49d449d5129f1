"""Markdown tables and PNG plots from a scaling results file (``python -m carbonsched.bench.scaling report``).

The tables: one row per run (final primal, bound, certified gap, time to 1 % and 0.1 % certified gap,
wall time, peak memory, model size, error), and for the decompositions the cost of an iteration read from
their traces. The plots (matplotlib, Agg): the certified gap over time, one chart per size; the time to
1 % gap against sites on log–log axes with the fitted exponent per method (where at least two sizes
reached 1 %); peak memory against sites.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from carbonsched.bench.scaling_results import METHODS, certified_gap, load_results, time_to_gap

DECOMPOSITIONS: tuple[str, ...] = ("benders", "lagrangian")


def _fmt(x: float, digits: int = 1) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:,.{digits}f}"


def _money(x: float) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:,.0f}"


def _pct(g: float) -> str:
    return "—" if g is None or not math.isfinite(g) else f"{100 * g:.3f} %"


def _order(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rank = {m: i for i, m in enumerate(METHODS)}
    return sorted(runs, key=lambda r: (r["periods"], r["sites"], r["seed"], rank.get(r["method"], 99), r["method"]))


def run_metrics(run: dict[str, Any]) -> dict[str, float]:
    """Time to 1 % and 0.1 % certified gap (inf when the run is not certified or never got there)."""
    if not run.get("certified", False) or "seconds" not in run:
        return {"t1": math.inf, "t01": math.inf}
    s, p, d = run["seconds"], run["primal"], run["dual"]
    return {"t1": time_to_gap(s, p, d, 0.01), "t01": time_to_gap(s, p, d, 0.001)}


def iteration_cost(run: dict[str, Any]) -> list[dict[str, float]]:
    """Per phase of the trace (a new phase starts where the iteration count drops, e.g. Benders' root
    cut loop, then its master-MILP loop): iterations, the time the phase began, and the mean wall time per
    iteration from its first to its last recorded iteration, s."""
    it = np.asarray(run.get("iteration", np.zeros(0)), dtype=np.int64)
    sec = np.asarray(run.get("seconds", np.zeros(0)), dtype=np.float64)
    phases = []
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(it) < 0) + 1, [it.size]]) if it.size else np.zeros(1, int)
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=False):
        pit, psec = it[lo:hi], sec[lo:hi]
        _, first = np.unique(pit, return_index=True)
        span = float(pit[first[-1]] - pit[first[0]])
        mean = float(psec[first[-1]] - psec[first[0]]) / span if span > 0 else math.nan
        phases.append({"start_s": float(psec[0]), "iterations": float(pit.max() - pit.min() + 1), "mean_s": mean})
    return phases


def fit_exponent(sites: Sequence[float], times: Sequence[float]) -> float | None:
    """Slope of log(time) against log(sites) by least squares; None with fewer than two finite points."""
    x = np.asarray(sites, dtype=np.float64)
    y = np.asarray(times, dtype=np.float64)
    ok = np.isfinite(y) & (y > 0) & (x > 0)
    if np.unique(x[ok]).size < 2:
        return None
    slope, _ = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    return float(slope)


def tables(runs: list[dict[str, Any]]) -> str:
    """The markdown tables of the report."""
    lines = ["| S | T | seed | method | status | final primal $ | final bound $ | certified gap | t(1 %) s | "
             "t(0.1 %) s | wall s | peak MB | vars | rows | nonzeros |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    errors = []
    for r in _order(runs):
        m = run_metrics(r)
        gap = r.get("gap", math.inf) if r.get("certified", False) else math.inf
        status = r.get("status", "")
        if not r.get("ok", False):
            status = f"**{status}**"
            errors.append(f"- `{r['key']}`: {r.get('error', '')[:400]}")
        lines.append(
            f"| {r['sites']} | {r['periods']} | {r['seed']} | {r['method']} | {status} | "
            f"{_money(r.get('objective', math.nan))} | {_money(r.get('bound', math.nan))} | {_pct(gap)} | "
            f"{_fmt(m['t1'])} | {_fmt(m['t01'])} | {_fmt(r.get('wall_seconds', math.nan), 0)} | "
            f"{_fmt(r.get('peak_rss_mb', math.nan), 0)} | {_money(r.get('n_vars', math.nan))} | "
            f"{_money(r.get('n_rows', math.nan))} | {_money(r.get('n_nonzeros', math.nan))} |")
    out = "\n".join(lines) + "\n"
    if errors:
        out += "\nFailed, crashed or killed runs:\n\n" + "\n".join(errors) + "\n"
    dec = [r for r in _order(runs) if r["method"] in DECOMPOSITIONS and len(r.get("seconds", ())) > 0]
    if dec:
        out += ("\nDecomposition iterations, read from the traces (a phase starts where the iteration count "
                "drops: Benders' root cut loop, then its master-MILP loop): per phase, the time it began, "
                "iterations recorded, mean wall time per iteration:\n\n"
                "| S | T | seed | method | phases: start s / iterations / s per iteration |\n|---|---|---|---|---|\n")
        for r in dec:
            txt = "; ".join(f"{p['start_s']:.1f} s / {p['iterations']:.0f} / {_fmt(p['mean_s'], 2)}"
                            for p in iteration_cost(r))
            out += f"| {r['sites']} | {r['periods']} | {r['seed']} | {r['method']} | {txt} |\n"
    fits = []
    for method in _methods(runs):
        pts = [(r["sites"], run_metrics(r)["t1"]) for r in runs if r["method"] == method]
        slope = fit_exponent([p[0] for p in pts], [p[1] for p in pts])
        if slope is not None:
            fits.append(f"- {method}: time to 1 % ∝ S^{slope:.2f}")
    out += "\nFitted exponents of the time to 1 % gap against sites (least squares on log–log, sizes that "
    out += "reached 1 %):\n\n" + ("\n".join(fits) if fits else "- none: no method reached 1 % at two sizes") + "\n"
    return out


def _save_figure(fig: Any, path: Path) -> Path:
    """Lay out, write as PNG (100 dpi) and close a figure; returns its path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _methods(runs: list[dict[str, Any]]) -> list[str]:
    present = {r["method"] for r in runs}
    return [m for m in METHODS if m in present] + sorted(present - set(METHODS))


def plot_gap_over_time(runs: list[dict[str, Any]], img_dir: Path, prefix: str) -> list[Path]:
    """One chart per (S, T) of the first seed: certified gap over time per method, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    sizes = sorted({(r["sites"], r["periods"]) for r in runs})
    for n_sites, n_periods in sizes:
        here = [r for r in runs if (r["sites"], r["periods"]) == (n_sites, n_periods)]
        seed = min(r["seed"] for r in here)
        fig, ax = plt.subplots(figsize=(6, 4))
        drawn = False
        for r in _order([r for r in here if r["seed"] == seed]):
            sec = np.asarray(r.get("seconds", ()))
            if sec.size == 0:
                continue
            gap = certified_gap(r["primal"], r["dual"])
            shown = np.where(np.isfinite(gap), np.maximum(gap, 1e-6), np.nan)
            style = "-" if r.get("certified", False) else ":"
            label = r["method"] + ("" if r.get("ok", False) else f" ({r.get('status')})")
            ax.step(sec, shown, where="post", linestyle=style, label=label)
            drawn = True
        for target in (1e-2, 1e-3):
            ax.axhline(target, color="grey", linewidth=0.5)
        ax.set_yscale("log")
        ax.set_xlabel("seconds")
        ax.set_ylabel("(bound − primal) / max(1, |primal|)")
        ax.set_title(f"S = {n_sites}, T = {n_periods}, seed {seed}", fontsize=9)
        if drawn:
            ax.legend(fontsize=7)
        paths.append(_save_figure(fig, img_dir / f"{prefix}_gap_S{n_sites}_T{n_periods}.png"))
    return paths


def plot_against_sites(runs: list[dict[str, Any]], img_dir: Path, prefix: str) -> list[Path]:
    """Time to 1 % (with fitted exponents) and peak memory against sites, log–log, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for periods in sorted({r["periods"] for r in runs}):
        sub = [r for r in runs if r["periods"] == periods]
        fig, ax = plt.subplots(figsize=(6, 4))
        for method in _methods(sub):
            pts = sorted((r["sites"], run_metrics(r)["t1"]) for r in sub if r["method"] == method)
            x = np.array([p[0] for p in pts], dtype=float)
            y = np.array([p[1] for p in pts], dtype=float)
            ok = np.isfinite(y)
            if not ok.any():
                continue
            slope = fit_exponent(x, y)
            label = method + (f" (slope {slope:.2f})" if slope is not None else "")
            ax.plot(x[ok], y[ok], "o-", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sites S")
        ax.set_ylabel("time to 1 % certified gap, s")
        ax.set_title(f"T = {periods}; runs that never reached 1 % are not drawn", fontsize=9)
        if ax.get_lines():
            ax.legend(fontsize=7)
        paths.append(_save_figure(fig, img_dir / f"{prefix}_t1_vs_sites_T{periods}.png"))

        fig, ax = plt.subplots(figsize=(6, 4))
        for method in _methods(sub):
            pts = sorted((r["sites"], r.get("peak_rss_mb", math.nan)) for r in sub if r["method"] == method)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=method)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sites S")
        ax.set_ylabel("peak resident memory, MB (process + workers)")
        ax.set_title(f"T = {periods}", fontsize=9)
        ax.legend(fontsize=7)
        paths.append(_save_figure(fig, img_dir / f"{prefix}_memory_T{periods}.png"))
    return paths


def write_report(results: Path, *, img_dir: Path = Path("scaling-report"), prefix: str = "scaling",
                 link_dir: str | None = None) -> str:
    """Build the markdown report of ``results`` and write its PNGs into ``img_dir``.

    Parameters
    ----------
    results : Path
        A results file written by ``python -m carbonsched.bench.scaling run``.
    img_dir : Path
        Where the PNGs go (created if needed; default ``scaling-report``, so that a report never
        overwrites the shipped figures in docs/img unless asked to).
    prefix : str
        File-name prefix of the PNGs.
    link_dir : str, optional
        Directory written in the markdown image links (default ``img_dir``).

    Returns
    -------
    str
        The markdown text.
    """
    runs = load_results(results)
    if not runs:
        return f"No complete runs in {results}.\n"
    img_dir = Path(img_dir)
    img_dir.mkdir(parents=True, exist_ok=True)
    link = str(link_dir if link_dir is not None else img_dir).rstrip("/")
    text = tables(runs)
    pngs = plot_gap_over_time(runs, img_dir, prefix) + plot_against_sites(runs, img_dir, prefix)
    text += "\n" + "\n".join(f"![{p.stem}]({link}/{os.path.basename(p)})" for p in pngs) + "\n"
    return text
