"""Running a SCIP model: limits, an event handler that records the unified trace, progress events.

The trace handler listens to new incumbents and to solved nodes, and records (seconds, primal,
dual, nodes) rows, at every incumbent and at most every ``trace_interval`` seconds otherwise; it
reports a :class:`carbonsched.progress.ProgressEvent` at every new incumbent and at most every
``progress_interval`` seconds otherwise.

SCIP's own log is hidden by :func:`configure` unless it is switched on for the process with
:func:`show_scip_output` (the CLI's ``--scip-log``). The switch is an environment variable, so the
worker processes a decomposition starts afterwards inherit it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import signal
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from carbonsched.errors import OutOfMemoryError
from carbonsched.progress import ProgressCallback, ProgressEvent
from pyscipopt import SCIP_EVENTTYPE, Eventhdlr, Model

from .scip_arrays import scip_c

log = logging.getLogger(__name__)

SCIP_INF = 1e20

#: SCIP status -> SOLUTION.md status.
STATUS_MAP = {
    "optimal": "optimal",
    "gaplimit": "gap_limit",
    "timelimit": "time_limit",
    "userinterrupt": "interrupted",
    "nodelimit": "iteration_limit",
    "totalnodelimit": "iteration_limit",
    "stallnodelimit": "iteration_limit",
    "sollimit": "iteration_limit",
    "bestsollimit": "iteration_limit",
    "restartlimit": "iteration_limit",
    "memlimit": "iteration_limit",
}

#: Environment variable that shows SCIP's own log in every model :func:`configure` sets up ("1" on).
SCIP_OUTPUT_ENV = "CARBONSCHED_SCIP_OUTPUT"


#: SCIP's status after it caught Ctrl-C (``misc/catchctrlc``) during a solve.
SCIP_USER_INTERRUPT = "userinterrupt"

#: Solves of this process that ended with :data:`SCIP_USER_INTERRUPT` (see :func:`interrupts_seen`).
_interrupts = 0
#: The model :func:`configure` saw last, until its status is read by :func:`note_scip_status`.
_unread: weakref.ref | None = None


def raise_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` if the last SCIP solve of this process was stopped by Ctrl-C unnoticed.

    A solve whose caller does not pass its status to :func:`note_scip_status` would swallow Ctrl-C;
    the next solve of the process (:func:`configure` calls this first) and every round of site solves
    (:meth:`carbonsched.decomp.parallel.SitePool.map`) raise it instead.
    """
    _raise_if_unread_interrupt(None)


def _raise_if_unread_interrupt(model: Model | None) -> None:
    global _unread, _interrupts
    prev = None if _unread is None else _unread()
    if model is not None:
        _unread = weakref.ref(model)
    if prev is None or prev is model:
        return
    if model is None:
        _unread = None  # read now
    try:
        status = prev.getStatus()
    except Exception:  # noqa: BLE001 - a model in a stage without a status
        return
    if status == SCIP_USER_INTERRUPT:
        _interrupts += 1
        raise KeyboardInterrupt


def optimize(model: Model) -> None:
    """``model.optimize()`` without holding the GIL (PySCIPOpt's ``optimizeNogil`` where it exists).

    While a solve holds the GIL no Python thread runs: neither the CLI's heartbeat nor the SIGTERM relay
    of :func:`sigterm_as_sigint`, so SIGTERM would wait for the solve's end. Only for models without
    Python callbacks (their callbacks take the GIL back themselves, but that is :func:`run_scip`'s job).
    """
    getattr(model, "optimizeNogil", model.optimize)()


def note_scip_status(scip_status: str, *, raise_interrupt: bool = True) -> None:
    """Turn a SCIP solve that Ctrl-C stopped into ``KeyboardInterrupt``.

    SCIP catches SIGINT itself while it solves (``misc/catchctrlc``): the signal never reaches Python,
    the solve returns with status ``userinterrupt`` and a loop of solves would simply go on with its
    next solve. Every solve in a loop passes its status here, so Ctrl-C ends the loop like it ends any
    other Python code. A top-level solve that returns its interrupted solution passes
    ``raise_interrupt=False``; the interrupt is counted either way (:func:`interrupts_seen`).
    """
    global _interrupts, _unread
    _unread = None
    if scip_status != SCIP_USER_INTERRUPT:
        return
    _interrupts += 1
    if raise_interrupt:
        raise KeyboardInterrupt


def run_interruptibly(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a helper thread while this thread waits in short steps.

    Python runs a signal handler only between bytecodes of the main thread, so Ctrl-C during one long C call
    (HiGHS on the 300-site relaxation: about 100 s; the Lagrangian's bundle master: a few seconds at 300
    sites) would wait for the call to end. HiGHS releases the GIL;
    waiting here instead, the main thread raises ``KeyboardInterrupt`` within a step. The abandoned solve
    finishes in its daemon thread (or ends with the process).
    """
    if threading.current_thread() is not threading.main_thread():
        return fn(*args, **kwargs)
    box: dict = {}

    def target() -> None:
        try:
            box["out"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["err"] = exc

    worker = threading.Thread(target=target, name="carbonsched-highs", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.05)
    if "err" in box:
        raise box["err"]
    return box["out"]


def interrupts_seen() -> int:
    """How many SCIP solves of this process Ctrl-C (or SIGTERM, see :func:`sigterm_as_sigint`) stopped."""
    return _interrupts


@contextlib.contextmanager
def sigterm_as_sigint() -> Iterator[None]:
    """While the block runs, SIGTERM is handled like Ctrl-C (installed from the main thread only).

    SIGTERM is relayed as SIGINT to this process: inside a SCIP solve SCIP catches it and stops with status
    ``userinterrupt`` (which :func:`note_scip_status` turns into ``KeyboardInterrupt``); outside one,
    Python raises ``KeyboardInterrupt``. Raising from a handler directly could happen inside one of SCIP's
    Python callbacks (the trace event handler), where the exception would not stop SCIP.

    The relay is a thread woken through :func:`signal.set_wakeup_fd`: a Python signal handler runs only
    when the main thread executes Python code, which a long SCIP solve (a root LP) does not for seconds
    (SIGTERM took 2.9 s to stop the 10-site monolithic solve that SIGINT stopped in 0.7 s). Nested blocks
    share the outer relay.

    A process started in the background by a non-interactive shell (``carbonsched solve ... &`` in a script)
    inherits SIGINT *ignored*, and Python then installs no handler for it: the relayed SIGINT did nothing, and
    SIGTERM did not stop a 1,000-site run in its LP (measured). For the block, an ignored SIGINT gets Python's
    default handler (Ctrl-C at a terminal does not reach background jobs either way).
    """
    if threading.current_thread() is not threading.main_thread() or _relay_active:
        yield
        return
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with _relay_sigterm():
            yield
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _relay_sigterm() -> Iterator[None]:
    """The relay of :func:`sigterm_as_sigint` (main thread, no relay running)."""
    global _relay_active
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    try:
        previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except ValueError:  # not the main interpreter
        reader.close()
        writer.close()
        yield
        return
    if previous_fd != -1:  # someone else (an event loop) reads the wakeup fd: keep theirs, relay in the handler
        signal.set_wakeup_fd(previous_fd)
        reader.close()
        writer.close()

        def relay_in_handler(signum, frame):  # noqa: ARG001
            os.kill(os.getpid(), signal.SIGINT)

        previous = signal.signal(signal.SIGTERM, relay_in_handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)
        return
    stop = threading.Event()

    def relay() -> None:
        while not stop.is_set():
            try:
                data = reader.recv(64)
            except OSError:
                return
            if not data:
                return
            if signal.SIGTERM in data and not stop.is_set():
                os.kill(os.getpid(), signal.SIGINT)

    # the handler itself does nothing: installing it makes the C-level handler write the wakeup byte
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    thread = threading.Thread(target=relay, name="carbonsched-sigterm-relay", daemon=True)
    _relay_active = True
    thread.start()
    try:
        yield
    finally:
        stop.set()
        signal.signal(signal.SIGTERM, previous)
        signal.set_wakeup_fd(-1)
        _relay_active = False
        with contextlib.suppress(OSError):
            writer.send(b"\0")  # wake the relay so that it sees ``stop``
        thread.join(timeout=1.0)
        reader.close()
        writer.close()


#: Whether a :func:`sigterm_as_sigint` relay is running (nested blocks use it).
_relay_active = False


def scip_output_shown() -> bool:
    """Whether SCIP's own log is switched on for this process (:data:`SCIP_OUTPUT_ENV`)."""
    return os.environ.get(SCIP_OUTPUT_ENV, "0") not in ("", "0")


@contextlib.contextmanager
def show_scip_output(enabled: bool = True) -> Iterator[None]:
    """Show (or hide) SCIP's own log in the models configured inside the ``with`` block.

    Worker processes started inside the block inherit the setting.
    """
    before = os.environ.get(SCIP_OUTPUT_ENV)
    os.environ[SCIP_OUTPUT_ENV] = "1" if enabled else "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(SCIP_OUTPUT_ENV, None)
        else:
            os.environ[SCIP_OUTPUT_ENV] = before


#: SCIP's error printer, ``void (*)(void* data, FILE* file, const char* msg)``. A ctypes callback takes the
#: GIL itself: SCIP may print from a solve that runs without it (PySCIPOpt's own relay does not, and a SCIP
#: error inside an ``optimizeNogil`` solve then crashed the process: scip-benders on 6 sites, exit −11).
_ERROR_PRINTER = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)


@_ERROR_PRINTER
def _log_scip_error(data, file, msg) -> None:  # noqa: ARG001 - SCIP's signature
    text = msg.decode(errors="replace").rstrip("\n") if msg else ""
    if text:
        log.debug("SCIP: %s", text)


@contextlib.contextmanager
def scip_errors_to_log() -> Iterator[None]:
    """Inside the block, SCIP's error messages go to this module's logger at debug level, not to stderr.

    SCIP prints a line for every function a failure passes through (``Error <-8> in function call`` five
    times over for one out-of-memory); the CLI reports the failure itself in one line. SCIP's error
    printer is process-wide; it is set through the ctypes binding of the loaded libscip
    (:func:`~carbonsched.formulations.scip_arrays.scip_c`). Without that binding SCIP keeps printing to
    stderr.
    """
    c = scip_c()
    if c is None:
        yield
        return
    set_printer = c.lib.SCIPmessageSetErrorPrinting
    set_printer.argtypes, set_printer.restype = [_ERROR_PRINTER, ctypes.c_void_p], None
    set_default = c.lib.SCIPmessageSetErrorPrintingDefault
    set_default.argtypes, set_default.restype = [], None
    set_printer(_log_scip_error, None)
    try:
        yield
    finally:
        set_default()


def _primal(value: float) -> float:
    return -math.inf if value <= -SCIP_INF else math.inf if value >= SCIP_INF else float(value)


@dataclass
class TraceRecorder:
    """Rows of the unified trace, in wall seconds since ``t0``."""

    t0: float
    seconds: list[float] = field(default_factory=list)
    primal: list[float] = field(default_factory=list)
    dual: list[float] = field(default_factory=list)
    iteration: list[int] = field(default_factory=list)

    def add(self, primal: float, dual: float, iteration: int) -> None:
        self.seconds.append(time.perf_counter() - self.t0)
        self.primal.append(primal)
        self.dual.append(dual)
        self.iteration.append(int(iteration))

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "seconds": np.asarray(self.seconds, dtype=np.float64),
            "primal": np.asarray(self.primal, dtype=np.float64),
            "dual": np.asarray(self.dual, dtype=np.float64),
            "iteration": np.asarray(self.iteration, dtype=np.int64),
        }


class TraceEventhdlr(Eventhdlr):
    """Records the trace and reports a :class:`ProgressEvent` at every new incumbent and at most every
    ``progress_interval`` seconds otherwise.

    LP solves are listened to as well, so the long root node of a large model reports its progress.
    Events carry SCIP's primal and dual bounds as they are (the model's own sense) and the node count
    as ``iteration``; phase ``root`` until the first node is solved, ``search`` after.
    """

    def __init__(self, recorder: TraceRecorder, progress: ProgressCallback | None, progress_interval: float,
                 trace_interval: float = 0.25) -> None:
        self.recorder = recorder
        self.progress = progress
        self.progress_interval = progress_interval
        self.trace_interval = trace_interval
        self._last_trace = -math.inf
        self._last_progress = -math.inf
        self._events = SCIP_EVENTTYPE.BESTSOLFOUND | SCIP_EVENTTYPE.NODESOLVED | SCIP_EVENTTYPE.LPSOLVED

    def eventinit(self) -> None:
        self.model.catchEvent(self._events, self)

    def eventexit(self) -> None:
        self.model.dropEvent(self._events, self)

    def eventexec(self, event) -> None:
        now = time.perf_counter()
        is_incumbent = event.getType() == SCIP_EVENTTYPE.BESTSOLFOUND
        if not is_incumbent and now - self._last_trace < self.trace_interval:
            return
        self.snapshot(incumbent=is_incumbent)
        if self.progress is not None and (is_incumbent or now - self._last_progress >= self.progress_interval):
            self._last_progress = now
            r = self.recorder
            phase = "root" if r.iteration[-1] <= 1 else "search"
            self.progress(ProgressEvent(r.seconds[-1], phase, r.primal[-1], r.dual[-1], r.iteration[-1],
                                        "new incumbent" if is_incumbent else ""))

    def snapshot(self, incumbent: bool = False) -> None:
        """Record a trace row; at a new incumbent its value, which SCIP's primal bound shows only later."""
        m = self.model
        self._last_trace = time.perf_counter()
        primal = _primal(m.getSolObjVal(m.getBestSol()) if incumbent else m.getPrimalbound())
        self.recorder.add(primal, _primal(m.getDualbound()), m.getNNodes())


def configure(model: Model, *, time_limit: float | None, gap: float | None, threads: int = 1,
              seed: int = 0, quiet: bool | None = None, catch_interrupt: bool = False, abs_gap: float = 0.0) -> None:
    """Apply limits, determinism settings and the log setting to a SCIP model.

    Parameters
    ----------
    model : Model
        The SCIP model.
    time_limit : float, optional
        SCIP's time limit, s.
    gap : float, optional
        Relative gap at which SCIP stops.
    abs_gap : float
        Absolute gap at which SCIP stops, in the objective's unit. Always set (default 0, SCIP's own), so a
        model re-solved in place never keeps an earlier solve's slack.
    threads : int
        Threads SCIP's LP solver may use.
    seed : int
        SCIP's random seed shift.
    quiet : bool, optional
        Hide SCIP's own log; default: hidden unless :func:`show_scip_output` switched it on.
    catch_interrupt : bool
        Let SCIP catch Ctrl-C (``misc/catchctrlc``) and stop at once with status ``userinterrupt``: only
        for callers that pass the status to :func:`note_scip_status` (:func:`run_scip` sets it itself).
        Otherwise SCIP leaves SIGINT to Python, which raises ``KeyboardInterrupt`` when the solve returns:
        slower, but a caller that ignores the status cannot swallow the interrupt.
    """
    _raise_if_unread_interrupt(model)
    if quiet is None:
        quiet = not scip_output_shown()
    if quiet:
        model.hideOutput()
    else:
        model.hideOutput(False)
    if time_limit is not None:
        model.setParam("limits/time", max(float(time_limit), 0.0))
    if gap is not None:
        model.setParam("limits/gap", max(float(gap), 0.0))
    model.setParam("limits/absgap", max(float(abs_gap), 0.0))
    model.setParam("randomization/randomseedshift", int(seed))
    model.setParam("misc/catchctrlc", bool(catch_interrupt))
    if threads > 1:
        model.setParam("lp/threads", int(threads))
    headroom = memory_headroom_mb()
    if headroom is not None:
        if headroom < SCIP_MIN_HEADROOM_MB:
            raise OutOfMemoryError(f"out of memory: {headroom:.0f} MB left under the process's address-space limit, "
                                   f"too little for a SCIP solve (at least {SCIP_MIN_HEADROOM_MB:.0f} MB)")
        # stop cleanly (status memlimit, best solution kept) before malloc fails (SCIP error -8)
        model.setParam("limits/memory", SCIP_MEMORY_SHARE * headroom)


#: Share of the memory left under the process's address-space limit that SCIP's soft memory limit
#: (``limits/memory``) is set to. SCIP counts only its own block memory, not the LP solver's or Python's,
#: and reports less than it uses. 40-site monolithic model, ``ulimit -v`` 360 to 600 MB: every run stopped at
#: the soft limit or finished (without it, 400 MB ended in SCIP error -8); with 0.5, 600 MB stopped a solve
#: that finds solutions.
SCIP_MEMORY_SHARE = 0.75
#: Below this many MB left under the address-space limit a SCIP solve is not started (OutOfMemoryError):
#: SCIP (its LP solver) crashed with a segmentation fault with 34 MB left (40-site monolithic model,
#: ``ulimit -v`` 300 MB) and stopped cleanly at its soft limit with 44 MB left.
SCIP_MIN_HEADROOM_MB = 64.0


def memory_headroom_mb() -> float | None:
    """MB this process may still map under its address-space limit (RLIMIT_AS); None without a limit.

    Read from ``/proc/self/statm`` (virtual size); None also where either is unavailable.
    """
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[0])
    except (ImportError, OSError, ValueError):
        return None
    used = pages * os.sysconf("SC_PAGE_SIZE")
    return max(soft - used, 0) / 2**20


@dataclass
class RunResult:
    """Outcome of :func:`run_scip`."""

    scip_status: str
    status: str
    has_solution: bool
    primal: float
    dual: float
    wall_seconds: float
    nodes: int
    trace: dict[str, np.ndarray]


def run_scip(model: Model, *, progress: ProgressCallback | None = None, progress_interval: float = 2.0,
             t0: float | None = None, record_trace: bool = True,
             initial_primal: float | None = None, raise_interrupt: bool = True,
             own_interrupt: Callable[[], bool] | None = None) -> RunResult:
    """Optimize ``model`` recording the trace.

    SCIP handles Ctrl-C itself: with ``raise_interrupt`` (the default, for solves inside a loop) the
    interrupted solve raises ``KeyboardInterrupt``; without it the result has status ``interrupted``.

    ``progress`` receives :class:`ProgressEvent` with SCIP's bounds in the model's sense (see
    :class:`TraceEventhdlr`); ``record_trace=False`` skips the event handler (a model re-solved in a
    loop can include it once only) and with it the progress events.

    ``own_interrupt()`` True after the solve says that the caller's own plugin stopped it
    (``interruptSolve``): status ``interrupted`` then, but neither Ctrl-C nor counted as one.
    """
    t0 = time.perf_counter() if t0 is None else t0
    rec = TraceRecorder(t0)
    if initial_primal is not None:
        rec.add(initial_primal, math.inf, 0)  # the seeded incumbent is the first trace row
    if record_trace:
        handler = TraceEventhdlr(rec, progress, progress_interval)
        model.includeEventhdlr(handler, "carbonsched_trace", "records primal/dual bounds over time")
    model.setParam("misc/catchctrlc", True)  # the status is read below
    # without the GIL, so that the CLI's heartbeat thread can print during a long root LP (the event
    # handler's callbacks take the GIL back when SCIP calls them)
    getattr(model, "optimizeNogil", model.optimize)()
    scip_status = model.getStatus()
    if scip_status == SCIP_USER_INTERRUPT and own_interrupt is not None and own_interrupt():
        note_scip_status("stopped by the caller")  # read, not an interrupt
    else:
        note_scip_status(scip_status, raise_interrupt=raise_interrupt)
    has_sol = model.getNSols() > 0
    if scip_status == "memlimit" and not has_sol:
        raise OutOfMemoryError(f"out of memory: SCIP reached its memory limit ({model.getParam('limits/memory'):.0f} "
                               f"MB, {SCIP_MEMORY_SHARE:.0%} of what the address-space limit left) before any solution")
    primal = _primal(model.getPrimalbound()) if has_sol else -math.inf
    dual = _primal(model.getDualbound())
    rec.add(primal, dual, model.getNNodes())
    log.debug("SCIP stopped: %s after %.2f s, %d nodes, primal %g, dual %g", scip_status,
              time.perf_counter() - t0, model.getNNodes(), primal, dual)
    return RunResult(
        scip_status=scip_status,
        status=STATUS_MAP.get(scip_status, scip_status),
        has_solution=has_sol,
        primal=primal,
        dual=dual,
        wall_seconds=time.perf_counter() - t0,
        nodes=int(model.getNNodes()),
        trace=rec.arrays(),
    )
