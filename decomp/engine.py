"""The decomposition engine: one hub owns the clock, bounds, incumbent, status, hooks and workers.

Every decomposition (Benders, the Lagrangian) is a short :class:`DecompositionAlgorithm` whose
``run(hub)`` supplies bounds and candidate plans; the :class:`Hub` does everything the methods share:

- the clock and the time limit (``remaining``, ``out_of_time``, ``budget``);
- the best proven bound and the incumbent, the trace of SOLUTION.md and the gap (one
  :class:`~carbonsched.decomp.bounds.BoundTracker`);
- one exact scorer for every candidate plan (:meth:`Hub.offer_plan`: the plan's compute constraints
  are checked, its energy dispatch is optimized exactly on the same worker pool); a plan that breaks
  a constraint is rejected with its reason, never dropped silently;
- the worker pool (:class:`~carbonsched.decomp.parallel.SitePool`), opened and closed around the run;
- the hooks (:class:`~carbonsched.decomp.hooks.DecompositionHooks`) and the one
  :class:`~carbonsched.decomp.state.SolveState` they see, whichever method runs;
- progress (:class:`~carbonsched.progress.ProgressEvent`) and the module logger;
- the status rule and the final :class:`~carbonsched.formulations.solution.Solution`; Ctrl-C and
  SIGTERM end the run with its best solution and status ``interrupted``.

Primal components (``decomp.rounding``, ``decomp.completion``) run on the hub's pool and hand their
plans or solutions to :meth:`Hub.offer`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from carbonsched.errors import CarbonschedError, InputError, NoSolutionError, OutOfMemoryError
from carbonsched.formulations.evaluate import evaluate
from carbonsched.formulations.monolithic import solve_monolithic
from carbonsched.formulations.plan import ComputePlan, PlanError
from carbonsched.formulations.scip_run import interrupts_seen, sigterm_as_sigint
from carbonsched.formulations.solution import Solution, SolveStatus
from carbonsched.instances.schema import Instance
from carbonsched.progress import ProgressCallback, ProgressEvent

from .bounds import BoundTracker
from .checkpoint import Checkpoint, StateDict, instance_fingerprint, load_checkpoint, save_checkpoint
from .hooks import DecompositionHooks
from .parallel import ParallelConfig, SitePool
from .state import SolveState

log = logging.getLogger(__name__)

#: A plan scored with less than this many seconds left is not scored when an incumbent exists.
MIN_SCORING_SECONDS = 0.5


@dataclass
class EngineOptions:
    """Options every decomposition shares (each algorithm's options class extends this one).

    Attributes
    ----------
    time_limit : float or None
        Wall-clock limit of the whole solve, s (None: none).
    gap : float
        Stop when (bound − Z) / max(1, |Z|) ≤ gap (SOLUTION.md's gap).
    config : ParallelConfig
        Workers for the per-site steps (subproblems, scoring, primal heuristics).
    initial : ComputePlan or None
        A plan scored first: the first incumbent.
    seed : int
        SCIP random seed shift of every solve.
    checkpoint : str or None
        Checkpoint file written atomically every ``checkpoint_every`` seconds (at the first trace row
        after they passed) and when the run ends, whatever its status (docs/reliability.md).
    checkpoint_every : float
        Seconds between checkpoints, s.
    resume : str or None
        Checkpoint file to continue from: the run starts at its elapsed seconds (``time_limit`` counts the
        total time), its trace rows first, its incumbent re-scored exactly, its bound kept, and the
        algorithm where it was. It must be of the same method and instance, with the same options
        (all but ``time_limit``, ``gap``, ``config``, ``initial``, the checkpoint options and the
        algorithm's iteration limits: ``resume_free_options``).
    """

    time_limit: float | None = None
    gap: float = 1e-4
    config: ParallelConfig = field(default_factory=ParallelConfig)
    initial: ComputePlan | None = None
    seed: int = 0
    checkpoint: str | None = None
    checkpoint_every: float = 60.0
    resume: str | None = None

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first bad option."""
        if self.time_limit is not None and not (self.time_limit >= 0.0):
            raise InputError(f"time_limit: must be >= 0 s or None (got {self.time_limit!r})")
        if not (0.0 <= self.gap < math.inf):
            raise InputError(f"gap: must be a finite number >= 0 (got {self.gap!r})")
        if not isinstance(self.config, ParallelConfig):
            raise InputError(f"config: must be a ParallelConfig (got {type(self.config).__name__})")
        if self.initial is not None and not isinstance(self.initial, ComputePlan):
            raise InputError(f"initial: must be a ComputePlan or None (got {type(self.initial).__name__})")
        for name in ("checkpoint", "resume"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (str, os.PathLike)) and str(value).strip()):
                raise InputError(f"{name}: must name a file or be None (got {value!r})")
        if not (isinstance(self.checkpoint_every, (int, float)) and 0.0 < self.checkpoint_every < math.inf):
            raise InputError(f"checkpoint_every: must be a finite number of seconds > 0 "
                             f"(got {self.checkpoint_every!r})")
        if self.checkpoint is not None and self.resume is not None and _same_file(self.checkpoint, self.resume):
            raise InputError(f"checkpoint: '{self.checkpoint}' is the resume file; a run never writes over its inputs")

    def resume_key(self) -> dict[str, str]:
        """The options a resumed run must repeat, name -> repr (all but ``resume_free_options``)."""
        return {name: repr(getattr(self, name)) for name in self.__dataclass_fields__
                if name not in self.resume_free_options}

    #: Options a resumed run may change: limits, workers, the first plan and the checkpoint options themselves
    #: (an algorithm's options class adds its iteration limits).
    resume_free_options = frozenset({"time_limit", "gap", "config", "initial", "checkpoint", "checkpoint_every",
                                     "resume"})


def _remove_stale_temporaries(path: str | os.PathLike) -> None:
    """Remove temporary files a killed run left beside checkpoint ``path`` (SIGKILL during an atomic write).

    Only names of the exact pattern of :func:`~carbonsched.instances.storage.write_atomically` for this file
    (``.NAME.<12 hex digits>.tmp``) are removed.
    """
    folder, name = os.path.split(os.path.abspath(path))
    pattern = re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{12}}\.tmp")
    with contextlib.suppress(OSError):
        for entry in os.listdir(folder):
            if pattern.fullmatch(entry):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, entry))
                    log.info("removed %s, left by a run killed while writing its checkpoint", entry)


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether paths ``a`` and ``b`` name one file (any spelling, links, hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class DecompositionAlgorithm:
    """An algorithm on the hub: ``run`` drives its phases and returns the status it stopped with."""

    name = "decomposition"

    def run(self, hub: Hub) -> SolveStatus:  # pragma: no cover - interface
        raise NotImplementedError

    def extra(self) -> dict[str, Any]:
        """Figures for the final solution's ``extra`` (default none)."""
        return {}

    def state_dict(self) -> StateDict:
        """The algorithm's state for a checkpoint: arrays and scalars by name.

        It must be consistent whenever the hub records a trace row (checkpoints are written there) and
        when the run ends, and enough for :meth:`load_state_dict` to continue where it was with a valid
        bound. An algorithm without it cannot be checkpointed.
        """
        raise InputError(f"checkpoint: the {self.name} method cannot be checkpointed")

    def load_state_dict(self, state: StateDict) -> None:
        """Continue from ``state`` (from :meth:`state_dict`) at the next :meth:`run`; InputError naming a bad field."""
        raise InputError(f"resume: the {self.name} method cannot be resumed")


def _sigterm_as_interrupt() -> contextlib.AbstractContextManager[None]:
    """SIGTERM ends the run like Ctrl-C while it lasts (main thread only).

    The handler relays SIGTERM as SIGINT (:func:`~carbonsched.formulations.scip_run.sigterm_as_sigint`), so
    a SCIP solve in progress stops at once as well; its ``userinterrupt`` status becomes ``KeyboardInterrupt``.
    """
    return sigterm_as_sigint()


class Hub:
    """Owns bounds, incumbent, clock, workers, hooks and termination for one decomposition run.

    Parameters
    ----------
    inst : Instance
        The instance.
    method : str
        Name recorded in the solution (``benders``, ``lagrangian``).
    options : EngineOptions
        Time limit, gap, workers, initial plan, seed.
    hooks : DecompositionHooks, optional
        User extension points, called in every phase.
    progress : callable, optional
        Receives a :class:`ProgressEvent` at every trace row.
    """

    def __init__(self, inst: Instance, method: str, options: EngineOptions, *,
                 hooks: DecompositionHooks | None = None, progress: ProgressCallback | None = None) -> None:
        options.validate()
        if hooks is not None and not isinstance(hooks, DecompositionHooks):
            raise InputError(f"hooks: must be a DecompositionHooks (got {type(hooks).__name__})")
        self.inst = inst
        self.method = method
        self.options = options
        self.hooks = hooks or DecompositionHooks()
        self.progress = progress
        self.tracker = BoundTracker()
        self.state = SolveState(inst=inst, method=method)
        self.pool: SitePool | None = None
        self.algorithm: DecompositionAlgorithm | None = None
        self._seen: set[bytes] = set()
        self._last_checkpoint = 0.0  # hub seconds of the last checkpoint written
        self._rows_at_checkpoint = -1  # trace rows it held
        self._fingerprint_value: str | None = None
        self.checkpoints_written = 0
        #: seconds since the start at which the current phase must end (an algorithm that reserves the rest
        #: of the time limit for a closing phase sets it); :meth:`remaining` counts down to it
        self.search_limit: float | None = None

    # ------------------------------------------------------------------ clock
    @property
    def seconds(self) -> float:
        """Wall time since the hub was made, s."""
        return self.tracker.seconds

    def remaining(self) -> float | None:
        """Seconds left before the time limit or the current phase's ``search_limit`` (None without either)."""
        limits = [t for t in (self.options.time_limit, self.search_limit) if t is not None]
        if not limits:
            return None
        return max(min(limits) - self.seconds, 0.0)

    def out_of_time(self) -> bool:
        """True once the time limit is reached."""
        left = self.remaining()
        return left is not None and left <= 0.0

    def budget(self, share: float, *, floor: float = 0.0, cap: float | None = None) -> float | None:
        """Seconds for one step: ``share`` of the time limit, at most what is left (None: no limit, or ``cap``)."""
        left = self.remaining()
        if left is None:
            return cap
        out = min(left, max(share * float(self.options.time_limit), floor))
        return out if cap is None else min(out, cap)

    # ------------------------------------------------------------------ bounds and incumbent
    @property
    def bound(self) -> float:
        return self.tracker.bound

    @property
    def primal(self) -> float:
        return self.tracker.primal

    @property
    def incumbent(self) -> Solution | None:
        return self.tracker.incumbent

    @property
    def gap(self) -> float:
        return self.tracker.gap

    def gap_reached(self) -> bool:
        """True when the requested gap is proven."""
        return self.tracker.gap <= self.options.gap

    def offer_bound(self, bound: float, source: str = "") -> bool:
        """A proven upper bound on the optimal Z; True when it improves the best one."""
        better = self.tracker.offer_bound(bound)
        if better:
            log.debug("%s: bound %.2f from %s", self.method, bound, source or "the algorithm")
        self._sync()
        return better

    def offer_solution(self, sol: Solution, source: str = "") -> bool:
        """A feasible, exactly scored solution; True when it improves the incumbent."""
        better = self.tracker.offer_solution(sol)
        if better:
            log.debug("%s: incumbent %.2f from %s", self.method, sol.objective, source or "the algorithm")
        self._sync()
        return better

    def score(self, plan: ComputePlan, source: str, *, time_limit: float | None = None) -> Solution | None:
        """Score ``plan`` exactly (its compute constraints checked); None if rejected or out of time.

        A plan that breaks a constraint is logged as a warning with the reason and kept in
        ``state.rejected``; it never becomes an incumbent.
        """
        left = self.remaining()
        if left is not None and left < MIN_SCORING_SECONDS and self.incumbent is not None:
            return None
        limit = left if time_limit is None else (time_limit if left is None else min(time_limit, left))
        try:
            return evaluate(self.inst, plan, method=self.method, time_limit=limit, pool=self.pool)
        except PlanError as exc:
            self.state.rejected.append((source, str(exc)))
            log.warning("%s: plan from %s rejected: %s", self.method, source, exc)
        except NoSolutionError as exc:
            log.info("%s: plan from %s not scored: %s", self.method, source, exc)
        return None

    def offer_plan(self, plan: ComputePlan | None, source: str, *, time_limit: float | None = None) -> bool:
        """Score ``plan`` exactly (once per distinct plan) and keep it if it improves the incumbent."""
        if plan is None:
            return False
        if not isinstance(plan, ComputePlan):
            reason = f"not a ComputePlan (got {type(plan).__name__})"
            self.state.rejected.append((source, reason))
            log.warning("%s: plan from %s rejected: %s", self.method, source, reason)
            return False
        try:
            key = (np.asarray(plan.job_site).tobytes() + np.asarray(plan.job_start).tobytes()
                   + np.round(np.asarray(plan.served, dtype=np.float64), 6).tobytes())
        except (TypeError, ValueError) as exc:
            key = repr(exc).encode()
        if key in self._seen:
            return False
        self._seen.add(key)
        sol = self.score(plan, source, time_limit=time_limit)
        return sol is not None and self.offer_solution(sol, source)

    def offer(self, candidate: ComputePlan | Solution | None, source: str) -> bool:
        """A plan (scored here) or an already exact, feasible solution."""
        if isinstance(candidate, Solution):
            return self.offer_solution(candidate, source)
        return self.offer_plan(candidate, source)

    # ------------------------------------------------------------------ hooks and progress
    def _sync(self) -> None:
        st = self.state
        st.seconds, st.bound, st.incumbent = self.seconds, self.tracker.bound, self.tracker.incumbent

    def set_phase(self, phase: str, iteration: int | None = None) -> None:
        """Enter ``phase``; a new phase is announced to ``progress`` (no trace row), so that a long phase
        that reports nothing until it ends (the LP warm start at 300 sites: 110 s) is named on screen."""
        changed = phase != self.state.phase
        self.state.phase = phase
        if iteration is not None:
            self.state.iteration = iteration
        if changed and self.progress is not None:
            self._sync()
            self.progress(ProgressEvent(self.seconds, phase, self.primal, self.bound, self.state.iteration,
                                        f"{phase} phase"))

    def pre_iteration(self, iteration: int) -> None:
        self.state.iteration = iteration
        self._sync()
        self.hooks.pre_iteration(self.state)

    def post_subproblems(self, results: Any) -> None:
        self.state.results = results
        self._sync()
        self.hooks.post_subproblems(self.state, results)

    def post_iteration(self) -> None:
        """Call the hook; score and offer whatever plans it returns."""
        self._sync()
        offered = self.hooks.post_iteration(self.state)
        if offered is None:
            return
        plans = offered if isinstance(offered, (list, tuple)) else [offered]
        for plan in plans:
            self.offer(plan, "hook")

    def record(self, message: str = "") -> None:
        """A trace row at the current iteration, and a progress event."""
        st = self.state
        self.tracker.record(st.iteration)
        self._sync()
        event = ProgressEvent(self.seconds, st.phase, self.primal, self.bound, st.iteration, message)
        log.debug("%s %s", self.method, event.format())
        if self.progress is not None:
            self.progress(event)
        every = self.options.checkpoint_every
        if self.options.checkpoint is not None and self.seconds - self._last_checkpoint >= every:
            self.write_checkpoint()

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> Checkpoint:
        """The run's state now: the hub's (clock, bound, incumbent plan, trace, options) and the algorithm's."""
        inc = self.incumbent
        plan = None if inc is None else ComputePlan(job_site=inc.job_site, job_start=inc.job_start, served=inc.served)
        algorithm = {} if self.algorithm is None else self.algorithm.state_dict()
        return Checkpoint(method=self.method, fingerprint=self._fingerprint(), instance_name=self.inst.name,
                          seconds=self.seconds, iteration=self.state.iteration, bound=self.bound,
                          options=self.options.resume_key(), plan=plan, trace=self.tracker.trace(),
                          algorithm=algorithm)

    def write_checkpoint(self) -> bool:
        """Write the checkpoint file now (atomically); a failed write is logged and the run goes on."""
        path = self.options.checkpoint
        if path is None:
            return False
        try:
            save_checkpoint(path, self.checkpoint())
        except CarbonschedError as exc:
            log.warning("%s: checkpoint not written: %s", self.method, exc)
            return False
        self._last_checkpoint = self.seconds
        self._rows_at_checkpoint = self.tracker.n_rows
        self.checkpoints_written += 1
        log.debug("%s: checkpoint written to %s at %.2f s", self.method, path, self._last_checkpoint)
        return True

    def _fingerprint(self) -> str:
        if self._fingerprint_value is None:  # hashing a large instance once per run is enough
            self._fingerprint_value = instance_fingerprint(self.inst)
        return self._fingerprint_value

    def read_resume(self, algorithm: DecompositionAlgorithm) -> Checkpoint:
        """Load ``options.resume``, refuse another method, instance or option set, hand the algorithm its state.

        Raises
        ------
        InputError
            One line naming the file and the field that does not match (or is corrupted).
        """
        path = self.options.resume
        ckpt = load_checkpoint(path)
        if ckpt.method != self.method:
            raise InputError(f"resume: {path}: field 'method' is {ckpt.method!r}, this run is {self.method!r}")
        if ckpt.fingerprint != self._fingerprint():
            raise InputError(f"resume: {path}: field 'instance_fingerprint' does not match instance "
                             f"'{self.inst.name}' (the checkpoint is of '{ckpt.instance_name}')")
        mine = self.options.resume_key()
        for name in sorted(set(mine) | set(ckpt.options)):
            if mine.get(name) != ckpt.options.get(name):
                raise InputError(f"resume: {path}: option '{name}' is {ckpt.options.get(name, 'absent')} in the "
                                 f"checkpoint, {mine.get(name, 'absent')} in this run")
        if ckpt.plan is not None:
            try:
                ckpt.plan.validate(self.inst)
            except PlanError as exc:
                raise InputError(f"resume: {path}: /incumbent: {exc}") from None
        try:
            algorithm.load_state_dict(ckpt.algorithm)
        except CarbonschedError as exc:
            raise InputError(f"resume: {path}: {exc}") from None
        return ckpt

    def _restore(self, ckpt: Checkpoint) -> None:
        """Continue the clock, trace and bound of ``ckpt``; re-score its incumbent plan exactly."""
        self.tracker.resume(ckpt.trace, ckpt.seconds, ckpt.bound)  # the clock counts the total time of the run
        self._last_checkpoint = ckpt.seconds
        self.state.info["resumed_at_seconds"] = float(ckpt.seconds)
        self.set_phase("resume", ckpt.iteration)
        if ckpt.plan is not None:
            self.offer_plan(ckpt.plan, "checkpoint")
            if self.incumbent is None:
                log.warning("%s: the checkpoint's incumbent was not re-scored; the run goes on without it", self.method)
        self.record(f"resumed from {self.options.resume} at {ckpt.seconds:.2f} s")

    # ------------------------------------------------------------------ closing phase
    def close_with_joint_milp(self, time_limit: float | None) -> SolveStatus | None:
        """The joint MILP in SCIP seeded with the incumbent; its bound and solutions join the hub's.

        Returns the status it ended with (None when it found nothing).
        """
        if self.incumbent is None:
            return None
        start = self.seconds
        self.set_phase("closing")
        limit_text = "no limit" if time_limit is None else f"{time_limit:.1f} s"
        self.record(f"joint MILP seeded with the incumbent ({limit_text})")
        plan = ComputePlan.from_solution(self.incumbent)
        try:
            sol = solve_monolithic(self.inst, time_limit=time_limit, gap=self.options.gap, seed=self.options.seed,
                                   initial=plan, method=self.method)
        except NoSolutionError:
            log.info("%s: closing phase found no solution; the incumbent stays", self.method)
            self.state.info["closing_seconds"] = self.seconds - start
            return None
        self.tracker.extend(sol.trace, offset=start, iteration=self.state.iteration, best=sol.objective)
        self.offer_solution(sol, "closing phase")
        self.offer_bound(sol.bound, "closing phase")
        self.state.info["closing_seconds"] = self.seconds - start
        self.record(f"closing phase {sol.status.value}")
        return sol.status

    def close_open_gap(self, status: SolveStatus) -> SolveStatus:
        """The closing phase after an algorithm's own search ended with ``status``: the joint MILP seeded
        with the incumbent for the rest of the time limit, when the gap is open and more than 1 s is left.

        Returns ``INTERRUPTED`` when Ctrl-C stopped it (a resumed run closes again), ``TIME_LIMIT`` when it
        ran and left the gap open, ``status`` otherwise.
        """
        if self.gap_reached() or self.incumbent is None:
            return status
        left = None if self.options.time_limit is None else self.options.time_limit - self.seconds
        if left is not None and left <= 1.0:
            return status
        closed = self.close_with_joint_milp(left)
        if closed is SolveStatus.INTERRUPTED:
            return closed
        return SolveStatus.TIME_LIMIT if closed is not None and not self.gap_reached() else status

    # ------------------------------------------------------------------ the run
    def run(self, algorithm: DecompositionAlgorithm) -> Solution:
        """Open the pool, run ``algorithm``, apply the status rule, return the final solution.

        Raises
        ------
        NoSolutionError
            The run stopped before any feasible plan was found.
        """
        status = SolveStatus.ITERATION_LIMIT
        self.algorithm = algorithm
        resumed = None if self.options.resume is None else self.read_resume(algorithm)
        if self.options.checkpoint is not None:
            algorithm.state_dict()  # an algorithm that cannot be checkpointed is refused before any work
        for path in (self.options.checkpoint, self.options.resume):
            if path is not None:
                _remove_stale_temporaries(path)
        interrupts_before = interrupts_seen()
        try:
            with _sigterm_as_interrupt():
                self.pool = SitePool(self.inst, self.options.config)
                if resumed is not None:
                    self._restore(resumed)
                if self.options.initial is not None:
                    self.set_phase("start", 0)
                    self.offer_plan(self.options.initial, "initial plan")
                status = algorithm.run(self)
            if interrupts_seen() > interrupts_before:  # a solve returned its interrupted result
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            status = SolveStatus.INTERRUPTED
            log.warning("%s: interrupted; writing the best solution so far", self.method)
        except (MemoryError, OutOfMemoryError) as exc:
            if self.incumbent is None:
                raise  # nothing to write: the CLI's one line, status 6
            # the incumbent is the result, with the status of a limit (as SCIP's own memory limit)
            status = SolveStatus.ITERATION_LIMIT
            log.warning("%s: out of memory (%s); writing the best solution so far", self.method, exc)
        finally:
            # worker memory is bounded (ParallelConfig.worker_memory_mb, worker_cache_mb) and reported; a
            # worker process id beyond the configured count is a replaced worker
            if self.pool is not None:
                self.state.info["peak_worker_mb"] = self.pool.peak_worker_mb
                self.state.info["worker_processes"] = len(self.pool.worker_peak_mb)
                self.state.info["worker_recoveries"] = self.pool.recoveries
                self.state.info["site_solvers_built"] = self.pool.solvers_built
                self.state.info["site_solvers_dropped"] = self.pool.solvers_dropped
                built = ", ".join(f"{kind} {n}" for kind, n in sorted(self.pool.built_by_kind.items()))
                bound = self.pool.config.worker_cache_mb
                log.info("%s: workers built %d site solver(s) (%s) and dropped %d (%s)", self.method,
                         self.pool.solvers_built, built or "none", self.pool.solvers_dropped,
                         f"cache bound {bound:.0f} MB each" if math.isfinite(bound) else "no cache bound")
                self.pool.close()
                self.pool = None
        if self.incumbent is None:
            if self.options.checkpoint is not None:
                self.write_checkpoint()  # the work so far (bounds, cuts) is kept for a resume
            if status is SolveStatus.INTERRUPTED:
                raise KeyboardInterrupt  # nothing to write: the CLI's "interrupted", status 130
            raise NoSolutionError(f"{self.method}: no feasible plan found before the solve stopped ({status.value})")
        if status is not SolveStatus.INTERRUPTED and self.gap_reached():
            status = SolveStatus.OPTIMAL if self.gap <= 1e-9 else SolveStatus.GAP_LIMIT
        elif status in (SolveStatus.OPTIMAL, SolveStatus.GAP_LIMIT):
            status = SolveStatus.TIME_LIMIT if self.out_of_time() else SolveStatus.ITERATION_LIMIT
        self.set_phase("done")
        self.record(f"status {status.value}")
        if self.options.checkpoint is not None:
            if self._rows_at_checkpoint != self.tracker.n_rows:
                self.write_checkpoint()  # the final checkpoint, whatever the status
            self.state.info["checkpoints_written"] = self.checkpoints_written
        best = self.incumbent
        # the solution file holds scalar figures only (state.info also carries arrays and objects for hooks)
        figures = {k: v for k, v in self.state.info.items() if isinstance(v, (bool, int, float, str, np.number))}
        extra = {**figures, **algorithm.extra(), "workers": self.options.config.n_jobs,
                 "backend": self.options.config.backend, "rejected_plans": len(self.state.rejected)}
        sol = Solution.from_arrays(
            self.inst, method=self.method, status=status, job_site=best.job_site, job_start=best.job_start,
            served=best.served, unserved=best.unserved, energy=best.energy, bound=self.bound,
            certified=math.isfinite(self.bound), wall_seconds=self.seconds, trace=self.tracker.trace(),
            extra=extra,
        )
        self.hooks.post_solve(self.state, sol)
        return sol


def run_algorithm(inst: Instance, solver_name: str, options_class: type[EngineOptions], algorithm_class: type, *,
                  hooks: DecompositionHooks | None = None, progress: ProgressCallback | None = None,
                  **fields: Any) -> Solution:
    """The short driver of every decomposition: validated options, one hub, the algorithm on it.

    ``solver_name`` is the method recorded in the solution (``benders``, ``lagrangian``).

    ``fields`` are the options (``time_limit``, ``gap``, ``config``, ... and the algorithm's own); an
    unknown name raises :class:`InputError` naming it.
    """
    unknown = set(fields) - set(options_class.__dataclass_fields__)
    if unknown:
        raise InputError(f"solve_{solver_name}: unknown option(s) {', '.join(sorted(unknown))}")
    if fields.get("config") is None:
        fields["config"] = ParallelConfig()
    options = options_class(**fields)
    return Hub(inst, solver_name, options, hooks=hooks, progress=progress).run(algorithm_class(inst, options))
