"""When to run each primal heuristic: less often while it finds nothing, every time again once it does.

A decomposition's recovery runs several primal heuristics (completion by allocation, the repaired plan,
neighbourhoods, ...). At 100 sites most of them stop improving the incumbent after the first rounds
while still costing seconds that the multipliers could use (docs/decomposition.md, "Scheduling the
primal heuristics"). :class:`HeuristicSchedule` backs a heuristic off exponentially after each call
that did not improve the incumbent and resets it after one that did. It counts calls, not seconds, so
runs without a time limit stay identical whatever the number of workers.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from carbonsched.errors import InputError

from .checkpoint import StateDict, state_array

log = logging.getLogger(__name__)

#: A heuristic that keeps failing still runs at least once in this many recoveries.
MAX_PERIOD = 8
#: A gain below this share of |Z| does not count as an improvement (at 100 sites the neighbourhoods kept
#: finding +0.26 $ on 2.5 M$ and so ran at every recovery).
MIN_RELATIVE_GAIN = 1e-5


@dataclass
class HeuristicRecord:
    """What one heuristic did so far: calls, improvements, gain ($), seconds, and its back-off."""

    calls: int = 0
    improved: int = 0
    gain: float = 0.0
    seconds: float = 0.0
    period: int = 1  # run once in this many recoveries
    wait: int = 0  # recoveries still to skip


@dataclass
class HeuristicSchedule:
    """Exponential back-off of the primal heuristics named ``names``.

    After a call that did not improve the incumbent by more than :data:`MIN_RELATIVE_GAIN` of |Z|, the
    heuristic's period doubles (up to ``max_period`` recoveries, or the heuristic's own cap in
    ``max_periods``: 1 runs it at every recovery while still counting its calls and gains); after one that
    did, it runs at every recovery again.
    """

    names: tuple[str, ...]
    max_period: int = MAX_PERIOD
    max_periods: dict[str, int] = field(default_factory=dict)
    records: dict[str, HeuristicRecord] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.names:
            self.records.setdefault(name, HeuristicRecord())
        for name, cap in self.max_periods.items():
            if name not in self.names or not (isinstance(cap, int) and cap >= 1):
                raise ValueError(f"max_periods: {name!r} must be a scheduled heuristic with a cap >= 1 (got {cap!r})")

    def due(self, name: str) -> bool:
        """Whether ``name`` runs at this recovery (a skipped call counts down its wait)."""
        rec = self.records[name]
        if rec.wait > 0:
            rec.wait -= 1
            return False
        return True

    def report(self, name: str, before: float, after: float, seconds: float) -> None:
        """Record one call of ``name``: the incumbent's Z before and after it ($, −inf: none) and its seconds."""
        rec = self.records[name]
        rec.calls += 1
        rec.seconds += seconds
        gain = after - before if math.isfinite(before) and after > before else 0.0
        rec.gain += gain
        if after > before and (not math.isfinite(before) or gain > MIN_RELATIVE_GAIN * max(1.0, abs(after))):
            rec.improved += 1
            rec.period = 1
        else:
            rec.period = min(2 * rec.period, self.max_periods.get(name, self.max_period))
        rec.wait = rec.period - 1
        log.debug("%s: %+.2f $ in %.2f s (next in %d recoveries)", name, gain, seconds, rec.period)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per heuristic: calls, improvements, gain ($) and seconds (the Lagrangian logs it when its loop ends)."""
        return {n: {"calls": r.calls, "improved": r.improved, "gain": r.gain, "seconds": r.seconds}
                for n, r in self.records.items()}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> StateDict:
        """The back-off and the counters, one row per heuristic in the order of ``names``."""
        recs = [self.records[n] for n in self.names]
        return {"heuristic_counts": np.array([[r.calls, r.improved, r.period, r.wait] for r in recs], np.int64),
                "heuristic_totals": np.array([[r.gain, r.seconds] for r in recs], np.float64)}

    def load_state_dict(self, state: StateDict) -> None:
        """Restore :meth:`state_dict` (InputError naming the field when its shape or values do not fit)."""
        n = len(self.names)
        counts = state_array(state, "heuristic_counts", shape=(n, 4), dtype=np.int64)
        totals = state_array(state, "heuristic_totals", shape=(n, 2))
        if (counts < 0).any() or (counts[:, 2] < 1).any() or (counts[:, 3] >= counts[:, 2]).any():
            raise InputError("/algorithm/heuristic_counts: counts must be >= 0 and wait < period")
        for name, c, t in zip(self.names, counts, totals, strict=True):
            self.records[name] = HeuristicRecord(calls=int(c[0]), improved=int(c[1]), gain=float(t[0]),
                                                 seconds=float(t[1]), period=int(c[2]), wait=int(c[3]))
