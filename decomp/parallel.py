"""The parallel layer: per-site solves on joblib workers that keep their models between calls.

A decomposition describes its per-site work as a *site solver*: an object built once per site in a
worker (``factory(instance, site, **options)``) and then called with small per-iteration arguments
(a load profile, multipliers, ...). Workers are long-lived processes (joblib's loky pool, or the
processes of a Dask cluster through joblib's dask backend); each keeps the site solvers it has built in
a module-level cache keyed by (instance token, solver kind, site), so a model is built once and then
changed in place. A worker that has not yet seen the instance loads it from the HDF5 file the pool
wrote at start-up (the instance travels once per worker, not once per task).

Determinism: each task's result depends only on its arguments and the site solver's state, and each
site's calls arrive in iteration order, so the same inputs give the same results with 1 or N workers or
on Dask. Site solvers must therefore be deterministic (fixed SCIP seeds, no time-dependent choices
other than limits).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import math
import os
import resource
import shutil
import signal
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from carbonsched.errors import InputError
from carbonsched.formulations.scip_run import raise_if_interrupted
from carbonsched.instances.schema import Instance
from carbonsched.instances.storage import load, save
from joblib import Parallel, delayed, parallel_config

log = logging.getLogger(__name__)

BACKENDS = ("loky", "dask", "sequential")
#: With per-site cost estimates, sites are packed into at most this many chunks per worker.
CHUNKS_PER_WORKER = 4

#: Least growth a loky worker may show before it is replaced, MB. loky's own default (300 MB, with psutil
#: installed) restarted workers that merely held their cached site models at 100 sites, and each restart
#: rebuilt those models; the guard stays, at a size that means a real leak.
DEFAULT_WORKER_MEMORY_MB = 4096.0
#: Share of the machine's memory the workers may grow to together (the default bound is this share split
#: between them, at least DEFAULT_WORKER_MEMORY_MB): at 300 sites a worker holds 5.9 GB of site models, and
#: a fixed 4 GB guard replaced workers 12 times in a 600 s run.
WORKER_MEMORY_SHARE = 0.6
#: Seconds a loky worker may sit idle before loky ends it (loky's default is 300 s). A worker's cached site
#: models live as long as the worker: at 1,000 sites an LP round of the warm start takes 6 minutes, the
#: workers idled past 300 s, and their 1,000 site models were built again (35 s). The pool ends its workers
#: when it closes, and they watch their parent, so the longer limit keeps nothing alive past the run.
IDLE_WORKER_SECONDS = 24 * 3600


#: Share of the machine's memory the workers may keep resident together before they drop cached site solvers
#: (the default bound is this share split between them). At 1,000 sites a worker kept 500 site MILPs (3.5 MB
#: each once solved) and, after one exact scoring, 500 energy models (2.1 MB each; an empty SCIP model alone
#: is 1.4 MB) that the scorer used once or twice in a run: the workers grew to 4.2 GB each. With 25 % (3.2 GB
#: each of two workers on 24 GB) the site MILPs themselves were dropped and rebuilt in every iteration.
WORKER_CACHE_SHARE = 0.3
#: After dropping, a worker is brought down to this share of its bound, so that it does not drop again
#: after the next task.
CACHE_REFILL_SHARE = 0.9
#: Least cache bound per worker, MB (an instance's data and the imported libraries take about 400 MB).
MIN_WORKER_CACHE_MB = 1024.0


def _physical_memory_mb() -> float | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (ValueError, OSError, AttributeError):
        return None


def default_worker_memory_mb(n_workers: int) -> float:
    """Growth bound per worker, MB: :data:`WORKER_MEMORY_SHARE` of physical memory split over the workers."""
    total_mb = _physical_memory_mb()
    if total_mb is None:
        return DEFAULT_WORKER_MEMORY_MB
    return max(DEFAULT_WORKER_MEMORY_MB, WORKER_MEMORY_SHARE * total_mb / max(n_workers, 1))


def default_worker_cache_mb(n_workers: int) -> float:
    """Resident memory per worker past which it drops cached site solvers, MB: :data:`WORKER_CACHE_SHARE`
    of physical memory split over the workers, at least :data:`MIN_WORKER_CACHE_MB`."""
    total_mb = _physical_memory_mb()
    if total_mb is None:
        return 2.0 * MIN_WORKER_CACHE_MB
    return max(MIN_WORKER_CACHE_MB, WORKER_CACHE_SHARE * total_mb / max(n_workers, 1))

#: Prefix of the pool's temporary folder: ``carbonsched-pool-<owner pid>-<random>``.
POOL_DIR_PREFIX = "carbonsched-pool-"
#: Seconds between a worker's checks that the process that started the pool is still alive.
PARENT_CHECK_SECONDS = 0.5
#: A lost worker is replaced and its chunk resubmitted at most this many times in a row.
MAX_RECOVERIES_PER_MAP = 2


class WorkersLost(KeyboardInterrupt):
    """Workers died and could not be replaced: the run ends like an interrupt, with its best solution."""


# ----------------------------------------------------------------------- worker-side state
_INSTANCES: dict[str, Instance] = {}
_SOLVERS: dict[tuple[str, str, int], Any] = {}
#: When each solver was last called, on a counter of calls in this process (not a clock, so that which
#: solvers are dropped depends on the calls only), and how often it was called; both outlive a drop.
_LAST_USE: dict[tuple[str, str, int], int] = {}
_USES: dict[tuple[str, str, int], int] = {}
_CALLS = 0
#: glibc, loaded on first use by :func:`trim_heap` (False where there is none).
_LIBC: Any = None
_WATCHED: dict[int, str] = {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _watch_parent(owner: int, folder: str) -> None:
    """In a worker: exit when ``owner`` (the process that made the pool) is gone, removing its folder.

    loky keeps idle workers for minutes; a parent killed with SIGKILL never tells them to stop. A
    daemon thread checks every :data:`PARENT_CHECK_SECONDS` (a worker inside a SCIP solve notices when
    the solve returns) and ends the worker with ``os._exit``.
    """
    if owner != os.getppid() and not _pid_alive(owner):
        # the owner died while this worker was still starting (importing): it was re-parented before it could
        # watch, and would otherwise idle until loky's timeout (seen with a parent SIGKILLed at iteration 0)
        shutil.rmtree(folder, ignore_errors=True)
        os._exit(1)
    if owner != os.getppid() or owner in _WATCHED:  # not a loky worker of ``owner``, or already watching
        _WATCHED.setdefault(owner, folder)
        return
    _WATCHED[owner] = folder
    # Ctrl-C to the process group is the parent's to handle (it ends the run and stops the pool); a worker
    # would print a KeyboardInterrupt traceback of its own. SCIP still stops a site solve in progress.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_SECONDS)
            if os.getppid() != owner:  # re-parented: the owner is gone (even if not yet reaped)
                for path in _WATCHED.values():
                    shutil.rmtree(path, ignore_errors=True)
                os._exit(1)

    threading.Thread(target=watch, name="carbonsched-parent-watch", daemon=True).start()


def _end_loky_workers() -> None:
    """End the workers of loky's reusable executor (the pool's), instead of leaving them idle until its timeout."""
    from joblib.externals.loky import reusable_executor

    executor = reusable_executor._executor
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)


def _sweep_orphaned_pool_dirs() -> None:
    """Remove pool folders whose owner process is gone (a parent killed before it could clean up)."""
    root = tempfile.gettempdir()
    with contextlib.suppress(OSError):
        for name in os.listdir(root):
            if not name.startswith(POOL_DIR_PREFIX):
                continue
            owner = name[len(POOL_DIR_PREFIX):].split("-", 1)[0]
            if owner.isdigit() and not _pid_alive(int(owner)):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _set_worker_memory_guard(limit_mb: float) -> None:
    """In a loky worker: replace the worker only past ``limit_mb`` of growth (read by loky after each task)."""
    with contextlib.suppress(ImportError, AttributeError):
        from joblib.externals.loky import process_executor

        process_executor._MAX_MEMORY_LEAK_SIZE = int(limit_mb * 1e6)


def _peak_rss_mb() -> float:
    """Peak resident memory of this process, MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``; a no-op elsewhere).

    The site models hand SCIP's unused block memory back to the heap after each solve
    (``ArrayModel.free_transform``), but glibc keeps it mapped: with both, ten site models of the
    1,000-site instance use 6 MB each after their solves instead of 20 MB.
    """
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


def _worker_instance(token: str, path: str) -> Instance:
    inst = _INSTANCES.get(token)
    if inst is None:
        inst = load(path)
        _INSTANCES.clear()  # one instance per worker at a time keeps memory bounded
        _SOLVERS.clear()
        _LAST_USE.clear()
        _USES.clear()
        _INSTANCES[token] = inst
    return inst


def resident_mb() -> float:
    """Resident memory of this process now, MB (Linux; 0 where ``/proc`` is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return 0.0


def _drop_solvers_over(cache_mb: float) -> int:
    """Past ``cache_mb`` of resident memory, drop the least used site solvers; how many were dropped.

    Solvers are dropped in order of fewest calls, then least recent call (an exact scorer's energy models,
    called once in a run, go before the site MILPs called every iteration; a rebuilt solver keeps its
    count), an eighth of the cache at a time, then the heap is collected, trimmed and measured again, until
    this process is within :data:`CACHE_REFILL_SHARE` of ``cache_mb``. A dropped solver is rebuilt on its
    next call with the same results: site solvers do not depend on their history (their starts come with
    the call), which is also what lets a pool move a site between workers.
    """
    if resident_mb() <= cache_mb:
        return 0
    target = CACHE_REFILL_SHARE * cache_mb
    dropped = 0
    while _SOLVERS and resident_mb() > target:
        batch = max(1, len(_SOLVERS) // 8)
        for key in sorted(_SOLVERS, key=lambda k: (_USES.get(k, 0), _LAST_USE.get(k, -1), k))[:batch]:
            del _SOLVERS[key]
        dropped += batch
        gc.collect()  # a model held in a reference cycle is freed now, not at the next collection
        trim_heap()
    return dropped


@dataclass
class ChunkReport:
    """What a worker reports with a chunk's results."""

    pid: int
    #: Peak resident memory of the worker so far, MB.
    peak_mb: float
    #: Site solvers built for this chunk (not found in the worker's cache).
    built: int
    #: Cached site solvers dropped after this chunk to stay within the cache bound.
    dropped: int


def _run_chunk(token: str, path: str, kind: str, factory: Callable, options: dict, method: str,
               calls: list[tuple[int, tuple, dict]], memory_mb: float = DEFAULT_WORKER_MEMORY_MB,
               owner: int | None = None, cache_mb: float = math.inf) -> tuple[list[tuple[int, Any]], ChunkReport]:
    """Worker entry point: run ``method`` of the site solvers of one chunk of sites.

    ``owner`` is the process id of the pool's owner, which the worker watches (:func:`_watch_parent`).
    Past ``cache_mb`` of resident memory after the chunk, the least used solvers are dropped
    (:func:`_drop_solvers_over`). Returns the results by site and the worker's :class:`ChunkReport`.
    """
    global _CALLS
    if owner is not None:
        _watch_parent(owner, os.path.dirname(path))
    _set_worker_memory_guard(memory_mb)
    inst = _worker_instance(token, path)
    out = []
    built = 0
    for site, args, kwargs in calls:
        key = (token, kind, site)
        solver = _SOLVERS.get(key)
        if solver is None:
            solver = factory(inst, site, **options)
            _SOLVERS[key] = solver
            built += 1
        _CALLS += 1
        _LAST_USE[key] = _CALLS
        _USES[key] = _USES.get(key, 0) + 1
        out.append((site, getattr(solver, method)(*args, **kwargs)))
    trim_heap()
    return out, ChunkReport(os.getpid(), _peak_rss_mb(), built, _drop_solvers_over(cache_mb))


# ----------------------------------------------------------------------- driver side
def _is_lost_worker(exc: BaseException) -> bool:
    """Whether ``exc`` says a worker process died (killed, crashed), not that a task raised."""
    names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    return bool(names & {"TerminatedWorkerError", "BrokenProcessPool", "ShutdownExecutorError"})


@dataclass
class ParallelConfig:
    """How per-site work is spread.

    Attributes
    ----------
    n_jobs : int
        Worker processes (1 runs in this process, no pool).
    backend : {"loky", "dask", "sequential"}
        joblib's process pool, a Dask distributed cluster, or in-process.
    scheduler : str, optional
        Dask scheduler address; without one a local cluster of ``n_jobs`` workers is started (and
        stopped with the pool).
    worker_memory_mb : float, optional
        Growth of a loky worker's memory (MB, since its first task) past which it is replaced; its
        site models are then rebuilt elsewhere, with identical results. Default: 60 % of the machine's
        memory split over the workers, at least 4 GB (:func:`default_worker_memory_mb`).
    worker_cache_mb : float, optional
        Resident memory of a worker (MB) past which, after a task, it drops its least used site solvers
        (fewest calls first, then least recent) until it is within 90 % of the bound; they are rebuilt
        when next called, with identical results (slower, not different). Default: 30 % of the machine's
        memory split over the workers, at least 1 GB (:func:`default_worker_cache_mb`); ``inf`` keeps
        every solver, the default in-process (one worker), where the bound would be measured on the whole
        run's memory.
    """

    n_jobs: int = 1
    backend: str = "loky"
    scheduler: str | None = None
    worker_memory_mb: float | None = None
    worker_cache_mb: float | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise InputError(f"--backend: must be one of {', '.join(BACKENDS)} (got {self.backend!r})")
        if not isinstance(self.n_jobs, int) or self.n_jobs < 1:
            raise InputError(f"--jobs: must be an integer >= 1 (got {self.n_jobs!r})")
        if self.worker_memory_mb is None:
            self.worker_memory_mb = default_worker_memory_mb(self.n_jobs)
        if not (self.worker_memory_mb > 0):
            raise InputError(f"worker_memory_mb: must be > 0 (got {self.worker_memory_mb!r})")
        if self.worker_cache_mb is None:
            # in-process the bound would be measured on everything the run holds (the LP, the master), not
            # only on the cached solvers: the run keeps them all, as before
            in_process = self.backend == "sequential" or (self.backend == "loky" and self.n_jobs == 1)
            self.worker_cache_mb = math.inf if in_process else default_worker_cache_mb(self.n_jobs)
        if not (self.worker_cache_mb > 0):
            raise InputError(f"worker_cache_mb: must be > 0 (got {self.worker_cache_mb!r})")


class SitePool:
    """Site solvers of one instance, spread over workers that keep them alive between calls.

    Parameters
    ----------
    inst : Instance
        The instance; written once to a temporary HDF5 file that workers load on first use.
    config : ParallelConfig
        Workers and backend.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, inst: Instance, config: ParallelConfig | None = None) -> None:
        self.inst = inst
        self.config = config or ParallelConfig()
        self.token = uuid.uuid4().hex
        _sweep_orphaned_pool_dirs()
        self._dir = tempfile.mkdtemp(prefix=f"{POOL_DIR_PREFIX}{os.getpid()}-")
        self.path = os.path.join(self._dir, "instance.h5")
        save(inst, self.path)
        self._client = None
        self._cluster = None
        self._parallel: Parallel | None = None
        self._ctx: contextlib.ExitStack | None = None
        # removes the temporary folder even if close() is never called, without keeping the pool alive
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
        #: Peak resident memory seen per worker process id, MB (the driver's own under pid 0 when in-process).
        self.worker_peak_mb: dict[int, float] = {}
        #: Times a lost worker was replaced and the call's chunks resubmitted.
        self.recoveries = 0
        #: Site solvers built, by kind, and dropped to keep the workers within ``config.worker_cache_mb``, over
        #: all calls. A site's chunk may run on any worker, so a kind can be built more times than it has sites.
        self.built_by_kind: dict[str, int] = {}
        self.solvers_dropped = 0
        self._start()

    def _start(self) -> None:
        cfg = self.config
        self._ctx = contextlib.ExitStack()
        if cfg.backend == "sequential" or (cfg.backend == "loky" and cfg.n_jobs == 1):
            self._parallel = None
            return
        if cfg.backend == "dask":
            try:
                from dask.distributed import Client, LocalCluster
            except ImportError:
                raise InputError("--backend dask: install the 'dist' extra (pip install '.[dist]')") from None
            if cfg.scheduler:
                self._client = Client(cfg.scheduler)
            else:
                self._cluster = LocalCluster(n_workers=cfg.n_jobs, threads_per_worker=1, processes=True,
                                             dashboard_address=None)
                self._client = Client(self._cluster)
            self._ctx.enter_context(parallel_config(backend="dask"))
            self._parallel = Parallel(n_jobs=-1, batch_size=1)
        else:
            # every worker watches its parent from its start (the initializer), not from its first chunk's start
            self._ctx.enter_context(parallel_config(backend="loky", initializer=_watch_parent,
                                                    initargs=(os.getpid(), self._dir),
                                                    idle_worker_timeout=IDLE_WORKER_SECONDS))
            # one chunk per dispatch: chunks are already sized, and a worker that is done takes the next one
            self._parallel = Parallel(n_jobs=cfg.n_jobs, batch_size=1)
        self._ctx.enter_context(self._parallel)

    @property
    def n_workers(self) -> int:
        if self._parallel is None:
            return 1
        if self._client is not None:
            return max(1, len(self._client.scheduler_info().get("workers", {})))
        return self.config.n_jobs

    def chunks(self, sites: Sequence[int], cost: Mapping[int, float] | None = None) -> list[list[int]]:
        """Sites split into chunks, one task each (deterministic for given ``cost``).

        Without ``cost``: contiguous chunks, one per worker. With ``cost`` (estimated seconds per site, e.g.
        the last solve's): longest-processing-time packing into up to :data:`CHUNKS_PER_WORKER` chunks per
        worker, the heaviest chunk first, so that workers that finish early take the next chunk. With
        contiguous chunks a few slow sites on one worker set the pace; at 10 sites that made one worker
        sit idle for half of each Lagrangian iteration (docs/decomposition.md).
        """
        sites = list(sites)
        workers = min(self.n_workers, max(len(sites), 1))
        if cost is None:
            parts = np.array_split(np.arange(len(sites)), workers)
            return [[sites[i] for i in p] for p in parts if len(p)]
        n_chunks = min(len(sites), CHUNKS_PER_WORKER * workers)
        load = [0.0] * n_chunks
        chunks: list[list[int]] = [[] for _ in range(n_chunks)]
        for site in sorted(sites, key=lambda s: (-float(cost.get(s, 0.0)), s)):
            q = min(range(n_chunks), key=lambda c: (load[c], c))
            chunks[q].append(site)
            load[q] += float(cost.get(site, 0.0))
        order = sorted(range(n_chunks), key=lambda c: (-load[c], c))
        return [chunks[c] for c in order if chunks[c]]

    def map(self, kind: str, factory: Callable, method: str, calls: dict[int, tuple[tuple, dict]],
            options: dict | None = None, cost: Mapping[int, float] | None = None) -> dict[int, Any]:
        """Run ``solver.method(*args, **kwargs)`` for each site of ``calls``; results by site.

        Parameters
        ----------
        kind : str
            Name of the solver family (cache key), e.g. ``"benders-lp"``.
        factory : callable
            ``factory(inst, site, **options)`` building the site solver (a module-level function, so
            that it pickles).
        method : str
            Method name to call.
        calls : dict
            site -> (args, kwargs).
        options : dict, optional
            Keyword arguments of ``factory``.
        cost : mapping, optional
            Estimated seconds per site, to balance the workers' load (see :meth:`chunks`).
        """
        raise_if_interrupted()  # Ctrl-C caught by a SCIP solve of this process whose caller did not look
        options = options or {}
        sites = sorted(calls)
        memory, cache = self.config.worker_memory_mb, self.config.worker_cache_mb
        if self._parallel is None:
            res, report = _run_chunk(self.token, self.path, kind, factory, options, method,
                                     [(s, *calls[s]) for s in sites], memory, None, cache)
            _worker_instance(self.token, self.path)  # keep the driver's cache bound to this pool
            self.worker_peak_mb[0] = report.peak_mb
            self._count(kind, report)
            return dict(res)
        chunks = self.chunks(sites, cost)
        owner = os.getpid() if self.config.backend == "loky" else None  # loky workers are this process's children
        failures = 0
        while True:
            tasks = [delayed(_run_chunk)(self.token, self.path, kind, factory, options, method,
                                         [(s, *calls[s]) for s in chunk], memory, owner, cache) for chunk in chunks]
            try:
                results = self._parallel(tasks)
                break
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - only a lost worker is recovered, the rest re-raised
                if not _is_lost_worker(exc) or self.config.backend != "loky":
                    raise
                failures += 1
                if failures > MAX_RECOVERIES_PER_MAP:
                    raise WorkersLost(f"workers lost {failures} times in one call: {exc}") from exc
                # site solves are deterministic: a new pool rebuilds the lost models and repeats the call
                log.warning("a worker was lost (%s); restarting the pool and resubmitting %d chunk(s)",
                            type(exc).__name__, len(chunks))
                self.recoveries += 1
                self._restart()
        out: dict[int, Any] = {}
        for part, report in results:
            out.update(part)
            self.worker_peak_mb[report.pid] = max(report.peak_mb, self.worker_peak_mb.get(report.pid, 0.0))
            self._count(kind, report)
        return {s: out[s] for s in sites}  # site order, whatever the chunking: sums over sites stay bit-equal

    @property
    def solvers_built(self) -> int:
        """Site solvers built over all calls, every kind."""
        return sum(self.built_by_kind.values())

    def _count(self, kind: str, report: ChunkReport) -> None:
        self.built_by_kind[kind] = self.built_by_kind.get(kind, 0) + report.built
        if report.dropped:
            self.solvers_dropped += report.dropped
            log.debug("worker %d dropped %d site solver(s) to stay within %.0f MB (peak %.0f MB)", report.pid,
                      report.dropped, self.config.worker_cache_mb, report.peak_mb)

    def _restart(self) -> None:
        """Replace the worker processes (after one was lost); the temporary folder stays."""
        if self._ctx is not None:
            with contextlib.suppress(Exception):
                self._ctx.close()
        self._ctx = None
        self._start()

    @property
    def peak_worker_mb(self) -> float:
        """Largest peak resident memory of any worker so far, MB (0 before the first call)."""
        return max(self.worker_peak_mb.values(), default=0.0)

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None
            if self._parallel is not None and self._client is None:
                _end_loky_workers()
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
        self._cleanup()

    def __enter__(self) -> SitePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
