"""The one progress event every solve method reports, and the callback type that receives it.

Every method (monolithic SCIP, Benders, the Lagrangian, SCIP's Benders, the heuristics) calls its
``progress`` callback with a :class:`ProgressEvent` whenever its bounds move or a phase starts or
ends, and at least every few seconds while it works; the CLI prints them, a study records them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report of a running solve (a maximization of Z).

    Attributes
    ----------
    seconds : float
        Wall time since the solve started, s.
    phase : str
        What the method is doing, e.g. ``"lp"``, ``"root"``, ``"iteration"``, ``"recovery"``,
        ``"closing"``, ``"search"``, ``"done"``.
    primal : float
        Z of the best feasible solution so far, $ (``-inf`` before the first).
    bound : float
        Best proven upper bound on the optimal Z, $ (``inf`` before the first).
    iteration : int
        The method's iteration counter (B&B nodes for SCIP's own search).
    message : str
        Optional free text (what just happened), empty by default.
    """

    seconds: float
    phase: str
    primal: float
    bound: float
    iteration: int = 0
    message: str = ""

    @property
    def gap(self) -> float:
        """(bound − primal) / max(1, |primal|), ``inf`` while either side is missing (SOLUTION.md)."""
        if not (math.isfinite(self.primal) and math.isfinite(self.bound)):
            return math.inf
        return max(self.bound - self.primal, 0.0) / max(1.0, abs(self.primal))

    def format(self) -> str:
        """One fixed-width line for a terminal: no ``inf`` or ``-0`` in it."""
        primal = f"{self.primal:14.2f}" if math.isfinite(self.primal) else f"{'-':>14}"
        bound = f"{self.bound:14.2f}" if math.isfinite(self.bound) else f"{'-':>14}"
        gap = f"{100 * self.gap:8.3f}%" if math.isfinite(self.gap) else f"{'-':>9}"
        text = (f"{self.seconds:8.1f}s  {self.phase:<9} it {self.iteration:5d}  primal {primal}  bound {bound}  "
                f"gap {gap}")
        return f"{text}  {self.message}" if self.message else text


#: A receiver of progress events.
ProgressCallback = Callable[[ProgressEvent], None]


class ProgressReporter:
    """Sends a method's :class:`ProgressEvent` to its callback, forced or at most every ``interval`` s.

    A method calls the reporter wherever it has something to say; forced reports (a bound moved, a
    phase started or ended) always go out, the others only when ``interval`` seconds have passed since
    the last report, so a tight loop can call it on every step for the price of a clock read.

    Parameters
    ----------
    progress : ProgressCallback or None
        The receiver; ``None`` makes every call a no-op.
    t0 : float, optional
        ``time.perf_counter()`` at the start of the solve (default: now), s.
    interval : float
        Least time between two unforced reports, s.
    """

    def __init__(self, progress: ProgressCallback | None, t0: float | None = None, interval: float = 2.0) -> None:
        self.progress = progress
        self.t0 = time.perf_counter() if t0 is None else t0
        self.interval = interval
        self._last = -math.inf

    def __call__(self, phase: str, primal: float, bound: float = math.inf, iteration: int = 0, message: str = "",
                 *, force: bool = False) -> None:
        """Report (``primal``, ``bound`` in $) if forced or if ``interval`` s have passed since the last report."""
        if self.progress is None:
            return
        now = time.perf_counter()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        self.progress(ProgressEvent(now - self.t0, phase, float(primal), float(bound), int(iteration), message))
