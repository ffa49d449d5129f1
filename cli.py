"""The ``carbonsched`` command line: generate, info, solve, check, compare, demo, export, import, plot, frontier.

Exit statuses: 0 success, 1 a checked solution is invalid, 2 bad input (one-line message, no
traceback), 3 infeasible instance, 4 time limit without a solution, 5 an output file could not be
written (the previous file is intact), 6 out of memory with no solution to write, 130 interrupted
without a solution to write (or a ``compare`` whose strategies did not all finish). Outputs are checked
before any work starts, and SIGTERM is handled like Ctrl-C (see docs/reliability.md).

Outside the benchmarks, the CLI is the one place that prints: it attaches the handler of the ``carbonsched`` logger
(``--log-level``), prints the solve methods' progress events, and switches SCIP's own log on
(``--scip-log``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import logging
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from carbonsched import __version__
from carbonsched.errors import CarbonschedError, InputError, OutOfMemoryError
from carbonsched.progress import ProgressEvent

#: Levels of ``--log-level``.
LOG_LEVELS = ("debug", "info", "warning", "error")
#: ``--log-level`` when it is not given: solve tells what it does, the other commands only warn.
DEFAULT_LOG_LEVEL = {"solve": "info"}


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with status 2 (its own default too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(kind: type, minimum: float, strict: bool, maximum: float | None = None):
    """An argparse type: ``kind`` (int or float) at least ``minimum`` (above it when ``strict``), at most
    ``maximum``."""
    word = "an integer" if kind is int else "a number"
    rule = f"> {minimum:g}" if strict else f">= {minimum:g}"

    def parse(text: str):
        try:
            val = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {word}, got {text!r}") from None
        if not (val > minimum if strict else val >= minimum):  # also refuses NaN
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        if maximum is not None and not val <= maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum:.0f}, got {text}")
        return val

    return parse


_positive_int = _number(int, 1, strict=False)
_nonneg_int = _number(int, 0, strict=False)
_positive_float = _number(float, 0.0, strict=True)
_nonneg_float = _number(float, 0.0, strict=False)
#: Seeds go to SCIP's ``randomization/randomseedshift`` and numpy: a 32-bit signed integer.
_seed = _number(int, 0, strict=False, maximum=2**31 - 1)


SOLVE_METHODS = ("monolithic", "benders", "lagrangian", "scip-benders", "greedy", "local-search")
#: The methods that write checkpoints (``--checkpoint``) and resume from them (``--resume``).
RESUMABLE_METHODS = ("benders", "lagrangian")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="carbonsched",
        description="Carbon-aware compute-power scheduling of AI data centers with microgrids.",
    )
    parser.add_argument("--version", action="version", version=f"carbonsched {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    # options every command takes (after the command name)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", choices=LOG_LEVELS,
                        help="messages of the carbonsched logger shown on stderr from this level up "
                             "(default info for solve, warning otherwise)")
    # options of the commands that run SCIP
    scip = argparse.ArgumentParser(add_help=False)
    scip.add_argument("--scip-log", action="store_true", help="show SCIP's own log (stdout)")

    gen = sub.add_parser("generate", parents=[common], help="generate an instance file (by preset or by size)")
    from carbonsched.instances.generator import PRESETS

    gen.add_argument("--preset", choices=sorted(PRESETS), help="named preset (paper, small, medium, ...)")
    gen.add_argument("--sites", type=_positive_int, help="number of sites S")
    gen.add_argument("--periods", type=_positive_int, help="number of periods T (default 24)")
    gen.add_argument("--jobs", type=_nonneg_int, help="number of training jobs J")
    gen.add_argument("--classes", type=_nonneg_int, help="number of inference classes K")
    gen.add_argument("--period-hours", type=_positive_float, help="period length in hours (default 1)")
    gen.add_argument("--job-sites", type=_positive_int, default=10,
                     help="at most this many allowed sites per job (default 10; S gives jobs that may run almost "
                          "anywhere)")
    gen.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    gen.add_argument("--name", help="instance name (default: derived from preset/size and seed)")
    gen.add_argument("-o", "--output", required=True, help="output HDF5 file")

    info = sub.add_parser("info", parents=[common], help="print sizes and calibration figures of an instance file")
    info.add_argument("instance", help="instance HDF5 file")

    solve = sub.add_parser("solve", parents=[common, scip], help="solve an instance and write a solution file")
    solve.add_argument("instance", help="instance HDF5 file")
    solve.add_argument("--method", default="monolithic", choices=SOLVE_METHODS,
                       help="solve method (default monolithic)")
    solve.add_argument("--time-limit", type=_positive_float, help="wall-clock limit in seconds")
    solve.add_argument("--gap", type=_nonneg_float, default=1e-4, help="relative gap to stop at (default 1e-4)")
    solve.add_argument("--threads", type=_positive_int, default=1, help="threads for the LP solver (default 1)")
    solve.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    solve.add_argument("--jobs", type=_positive_int, default=1,
                       help="worker processes for the site subproblems of a decomposition (default 1)")
    solve.add_argument("--backend", default="loky", choices=("loky", "dask", "sequential"),
                       help="parallel backend of a decomposition (default loky: joblib's process pool)")
    solve.add_argument("--scheduler", help="Dask scheduler address (with --backend dask; default: a local cluster)")
    solve.add_argument("--worker-cache-mb", type=_positive_float,
                       help="resident memory (MB) past which a worker drops its least used site models; "
                            "they are rebuilt when needed, with the same results (default: 30%% of the machine's "
                            "memory split over the workers, at least 1024; no bound with one worker)")
    solve.add_argument("--initial", help="a solution file whose compute plan is the first incumbent")
    solve.add_argument("--close", default="auto", choices=("auto", "yes", "no"),
                       help="lagrangian and benders: finish with the joint MILP seeded with the incumbent when "
                            "the gap is still open, in the last half of --time-limit (auto: on instances of at "
                            "most 1000 site-periods; default auto)")
    solve.add_argument("--primal", default="auto", choices=("auto", "joint", "parallel"),
                       help="lagrangian and benders: primal side: joint-model polish in this process (benders: the "
                            "master's plans), or every step per site on the workers with neighbourhood passes (auto: "
                            "joint up to 1000 site-periods; default auto)")
    solve.add_argument("--checkpoint", metavar="FILE",
                       help="benders, lagrangian: write the run's state (incumbent, cuts or multipliers, trace) to "
                            "FILE atomically every --checkpoint-every seconds and when the run ends")
    solve.add_argument("--checkpoint-every", type=_positive_float, default=60.0, metavar="S",
                       help="seconds between checkpoints (default 60)")
    solve.add_argument("--resume", metavar="FILE",
                       help="benders, lagrangian: continue the run saved in the checkpoint FILE (same instance, "
                            "method and options; --time-limit counts the total time)")
    solve.add_argument("-o", "--output", required=True, help="solution HDF5 file to write")
    solve.add_argument("-q", "--quiet", action="store_true", help="no progress lines")

    compare = sub.add_parser("compare", parents=[common, scip],
                             help="run the seven strategies of MODEL.md and print one table")
    compare.add_argument("instance", help="instance HDF5 file")
    compare.add_argument("--out-dir", help="write DIR/STRATEGY.h5 for each strategy")
    compare.add_argument("--time-limit", type=_positive_float, help="seconds per MILP solve")
    compare.add_argument("--gap", type=_nonneg_float, default=1e-6, help="relative gap per MILP (default 1e-6)")

    check = sub.add_parser("check", parents=[common],
                           help="verify a solution against every constraint of MODEL.md (numpy only)")
    check.add_argument("instance", help="instance HDF5 file")
    check.add_argument("solution", help="solution HDF5 file")

    demo = sub.add_parser("demo", parents=[common, scip], help="compare all strategies on the embedded paper instance")
    demo.add_argument("--out-dir", help="write DIR/STRATEGY.h5 for each strategy")
    _add_results_commands(sub, common, scip, compare)
    return parser


def _add_results_commands(sub, common: argparse.ArgumentParser, scip: argparse.ArgumentParser,
                          compare: argparse.ArgumentParser) -> None:
    """The commands that turn files into tables, pictures and studies: export, import, plot, frontier."""
    compare.add_argument("--plot", help="also draw the table as a chart (PNG file)")

    export = sub.add_parser("export", parents=[common],
                            help="write an instance or a solution file as CSV tables or netCDF")
    export.add_argument("file", help="instance or solution HDF5 file (told apart by its root attribute 'schema')")
    export.add_argument("--instance", help="the instance of a solution FILE (needed for its names)")
    export.add_argument("--csv", metavar="DIR", help="write one CSV table per part into DIR")
    export.add_argument("--parquet", metavar="DIR", help="instance only: the import folder as Parquet tables")
    export.add_argument("--netcdf", metavar="OUT.nc", help="write an xarray Dataset as netCDF-3 (scipy engine)")

    imp = sub.add_parser("import", parents=[common],
                         help="build an instance file from a folder of CSV/Parquet tables (docs/own-data.md)")
    imp.add_argument("folder", help="folder of tables: instance, sites, price_buy, ... (docs/own-data.md)")
    imp.add_argument("-o", "--output", required=True, help="instance HDF5 file to write")

    plot = sub.add_parser("plot", parents=[common], help="draw a solution: Gantt, dispatch, charge, emissions, trace")
    plot.add_argument("instance", help="instance HDF5 file")
    plot.add_argument("solution", help="solution HDF5 file")
    plot.add_argument("-o", "--out-dir", required=True, help="folder for the PNG files (one per figure)")
    plot.add_argument("--sites", type=_positive_int, default=4,
                      help="dispatch panels drawn site by site, largest IT energy first; the rest are summed "
                           "(default 4)")

    front = sub.add_parser("frontier", parents=[common, scip],
                           help="solve joint and the baselines at several carbon budgets: benefit against emissions")
    front.add_argument("instance", help="instance HDF5 file")
    front.add_argument("--budgets", type=_nonneg_float, nargs="+", required=True, help="carbon budgets C, t CO2")
    front.add_argument("-o", "--output", required=True, help="results HDF5 file to write")
    front.add_argument("--plot", help="draw benefit against emissions (PNG file)")
    front.add_argument("--strategies", nargs="+", help="strategies to solve (default joint compute-only "
                                                       "energy-only sequential)")
    front.add_argument("--time-limit", type=_positive_float, help="seconds per MILP solve")
    front.add_argument("--gap", type=_nonneg_float, default=1e-6, help="relative gap per MILP (default 1e-6)")
    front.add_argument("--jobs", type=_positive_int, default=1,
                       help="worker processes: the joint chain and each baseline in parallel (default 1)")
    front.add_argument("--out-dir", help="also write DIR/STRATEGY-C.h5 for each solution")


def _cmd_generate(args: argparse.Namespace) -> int:
    from carbonsched.instances.generator import generate
    from carbonsched.instances.storage import save
    from carbonsched.instances.summary import format_summary

    by_size = [args.sites, args.jobs, args.classes]
    if args.preset is None and args.sites is None:
        raise InputError("generate: give --preset NAME or --sites S (with --periods/--jobs/--classes)")
    if args.preset is not None and any(v is not None for v in by_size):
        raise InputError("generate: --preset and --sites/--jobs/--classes are exclusive; use one or the other")
    out = check_output_file(args.output, "--output", {})
    inst = generate(
        args.preset,
        sites=args.sites,
        periods=args.periods,
        jobs=args.jobs,
        classes=args.classes,
        period_hours=args.period_hours,
        seed=args.seed,
        name=args.name,
        job_sites=args.job_sites,
    )
    save(inst, out)
    print(f"wrote {out}")
    print(format_summary(inst))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from carbonsched.instances.storage import load
    from carbonsched.instances.summary import format_summary

    print(format_summary(load(args.instance)))
    return 0


def _print_progress(event: ProgressEvent) -> None:
    print(event.format(), flush=True)


#: The CLI prints a progress line at least this often, s, also in phases that report nothing themselves.
HEARTBEAT_SECONDS = 10.0


class _ProgressPrinter:
    """Prints every progress event, and a heartbeat line when none came for :data:`HEARTBEAT_SECONDS`.

    The heartbeat repeats the last event's figures with the current time and ``still working``; it runs
    in a daemon thread, so it prints whenever the solve releases the GIL (waiting on workers, SCIP's
    event callbacks, HiGHS).
    """

    def __init__(self, interval: float = HEARTBEAT_SECONDS) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._event: ProgressEvent | None = None
        self._event_at = self._start = self._printed_at = time.monotonic()
        self._thread = threading.Thread(target=self._beat, name="carbonsched-heartbeat", daemon=True)

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            self._event, self._event_at = event, time.monotonic()
            self._printed_at = self._event_at
            print(event.format(), flush=True)

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.interval)):
            with self._lock:
                now = time.monotonic()
                if now - self._printed_at < self.interval:
                    continue
                ev = self._event
                if ev is None:
                    line = ProgressEvent(now - self._start, "start", -math.inf, math.inf, 0, "still working")
                else:
                    line = dataclasses.replace(ev, seconds=ev.seconds + (now - self._event_at),
                                               message="still working")
                print(line.format(), flush=True)
                self._printed_at = now

    def __enter__(self) -> _ProgressPrinter:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


def _same_file(a: str, b: str) -> bool:
    """Whether paths ``a`` and ``b`` name one file (links, ``..``, other spellings, hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _check_folder_writable(folder: str, flag: str) -> None:
    """Create and remove a probe file in ``folder``: permission bits alone miss read-only mounts."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".carbonsched-probe-", dir=folder)
    except OSError as exc:
        raise InputError(f"{flag}: folder '{folder}' is not writable ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def _refuse_inputs(target: str, flag: str, inputs: dict[str, str | None]) -> None:
    """Refuse an output ``target`` that is one of the run's ``inputs`` (argument name -> path)."""
    for name, path in inputs.items():
        if path and _same_file(target, path):
            raise InputError(f"{flag}: '{target}' is the {name} file '{path}'; a run never writes over its inputs")


def check_output_file(text: str, flag: str, inputs: dict[str, str | None]) -> Path:
    """Check an output file argument before any work starts; return its path.

    Refused (``InputError`` naming ``flag``): the empty string, a directory, a file in a missing or
    read-only folder, and any file that is one of the run's ``inputs`` (argument name -> path) under
    any spelling (links, ``..``, hard links). A solve never writes over its inputs.
    """
    if not text or not text.strip():
        raise InputError(f"{flag}: must name a file (got an empty string)")
    real = os.path.realpath(text)
    if os.path.isdir(real) or text.endswith(os.sep):
        raise InputError(f"{flag}: '{text}' is a directory; give a file name")
    folder = os.path.dirname(real)
    if not os.path.isdir(folder):
        raise InputError(f"{flag}: folder '{os.path.dirname(text) or '.'}' does not exist")
    _refuse_inputs(text, flag, inputs)
    _check_folder_writable(folder, flag)
    return Path(text)


def check_output_dir(text: str | None, flag: str, names: Sequence[str], inputs: dict[str, str | None]) -> Path | None:
    """Check (and create) an output folder that will receive ``NAME.h5`` for each of ``names``."""
    if text is None:
        return None
    if not text or not text.strip():
        raise InputError(f"{flag}: must name a folder (got an empty string)")
    if os.path.exists(text) and not os.path.isdir(text):
        raise InputError(f"{flag}: '{text}' exists and is not a folder")
    try:
        os.makedirs(text, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{flag}: cannot create folder '{text}' ({exc.strerror})") from None
    for name in names:
        target = os.path.join(text, f"{name}.h5")
        if os.path.isdir(target):
            raise InputError(f"{flag}: '{target}' is a directory")
        _refuse_inputs(target, flag, inputs)
    _check_folder_writable(text, flag)
    return Path(text)


@contextlib.contextmanager
def _libraries_loading() -> Iterator[None]:
    """Imports inside the block that fail to map a library under an address-space limit are out of memory.

    numba's llvmlite (imported by the Benders cut pool) and scipy's LAPACK map large shared libraries when
    first imported; under ``ulimit -v`` that fails with an OSError or ImportError, reported as status 6
    rather than a traceback.
    """
    try:
        yield
    except (OSError, ImportError) as exc:  # ImportError: "failed to map segment from shared object"
        from carbonsched.formulations.scip_run import memory_headroom_mb

        if memory_headroom_mb() is None or isinstance(exc, ModuleNotFoundError):
            raise
        detail = str(exc).split(". ")[0]
        raise OutOfMemoryError(f"out of memory: a library could not be loaded under the address-space limit "
                               f"({detail})") from None


def _solve_with_method(args: argparse.Namespace, inst, initial, progress) -> object:
    """Run ``args.method`` on ``inst`` with the CLI's options; returns its Solution."""
    with _libraries_loading():
        if args.method == "monolithic":
            from carbonsched.formulations.monolithic import solve_monolithic
        elif args.method == "scip-benders":
            from carbonsched.decomp.scip_benders import solve_scip_benders
        elif args.method in ("greedy", "local-search"):
            from carbonsched.decomp.heuristics import solve_greedy, solve_local_search
        else:
            from carbonsched.decomp.parallel import ParallelConfig

            if args.method == "benders":
                from carbonsched.decomp.benders import solve_benders
            else:
                from carbonsched.decomp.lagrangian import solve_lagrangian
    if args.method == "monolithic":
        return solve_monolithic(inst, time_limit=args.time_limit, gap=args.gap, threads=args.threads,
                                seed=args.seed, progress=progress, initial=initial)
    elif args.method == "scip-benders":
        return solve_scip_benders(inst, time_limit=args.time_limit, gap=args.gap, seed=args.seed, progress=progress)
    elif args.method == "greedy":
        return solve_greedy(inst, time_limit=args.time_limit, progress=progress)
    elif args.method == "local-search":
        return solve_local_search(inst, initial=initial, time_limit=args.time_limit or 60.0, seed=args.seed,
                                  progress=progress)
    config = ParallelConfig(n_jobs=args.jobs, backend=args.backend, scheduler=args.scheduler,
                            worker_cache_mb=args.worker_cache_mb)
    resumable = {"checkpoint": args.checkpoint, "checkpoint_every": args.checkpoint_every, "resume": args.resume}
    close = {"auto": None, "yes": True, "no": False}[args.close]
    if args.method == "benders":
        return solve_benders(inst, time_limit=args.time_limit, gap=args.gap, config=config, initial=initial,
                             close=close, progress=progress, seed=args.seed, primal=args.primal, **resumable)
    return solve_lagrangian(inst, time_limit=args.time_limit, gap=args.gap, config=config, initial=initial,
                            close=close, progress=progress, seed=args.seed, primal=args.primal, **resumable)


def _cmd_solve(args: argparse.Namespace) -> int:
    from carbonsched.formulations.checker import check_solution
    from carbonsched.formulations.plan import ComputePlan
    from carbonsched.formulations.solution import Solution
    from carbonsched.instances.storage import load

    inputs = {"instance": args.instance, "--initial": args.initial, "--resume": args.resume}
    if (args.checkpoint is not None or args.resume is not None) and args.method not in RESUMABLE_METHODS:
        flag = "--checkpoint" if args.checkpoint is not None else "--resume"
        raise InputError(f"{flag}: only the methods {' and '.join(RESUMABLE_METHODS)} checkpoint and resume "
                         f"(got --method {args.method})")
    out = check_output_file(args.output, "--output", inputs)
    if args.checkpoint is not None:
        check_output_file(args.checkpoint, "--checkpoint", inputs)
        if _same_file(args.checkpoint, args.output):
            raise InputError(f"--checkpoint: '{args.checkpoint}' is also the --output file; give two files")
    if args.resume is not None and not Path(args.resume).is_file():
        raise InputError(f"--resume: '{args.resume}': no such file")
    inst = load(args.instance)
    initial = None
    if args.initial is not None:
        initial = ComputePlan.from_solution(Solution.load(args.initial)).validate(inst)
    print(f"{inst.name}: S={inst.n_sites} T={inst.n_periods} J={inst.n_jobs} K={inst.n_classes}; "
          f"method {args.method}, time limit {args.time_limit or 'none'}, gap {args.gap:g}", flush=True)
    printer = None if args.quiet else _ProgressPrinter()
    with printer if printer is not None else contextlib.nullcontext():
        sol = _solve_with_method(args, inst, initial, printer)
    sol.save(out)
    report = check_solution(inst, sol)
    bound = f"{sol.bound:.2f} $" if math.isfinite(sol.bound) else "- (none proven)"
    gap = f"{sol.gap:.3%}" if math.isfinite(sol.gap) else "-"
    print(f"status {sol.status.value}  Z = {sol.objective:.2f} $  bound = {bound}  gap = {gap}  "
          f"certified {'yes' if sol.certified else 'no'}  emissions = {sol.emissions_t:.2f} t  "
          f"({sol.wall_seconds:.1f} s)")
    print(f"check: {'OK' if report.ok else 'INVALID'}; wrote {out}")
    return 0 if report.ok else 1


class _StrategyInterrupted(Exception):
    """A strategy of ``compare`` was stopped by Ctrl-C or SIGTERM (its result is no verdict)."""


def _compare(inst, out_dir: Path | None, time_limit: float | None, gap: float | None,
             plot: str | None = None) -> int:
    from carbonsched.formulations.checker import check_solution
    from carbonsched.formulations.compare import format_comparison, run_comparison
    from carbonsched.formulations.scip_run import interrupts_seen
    from carbonsched.formulations.solution import SolveStatus

    seen = [interrupts_seen()]

    def on_done(name, sol) -> None:
        interrupted = sol.status is SolveStatus.INTERRUPTED or interrupts_seen() > seen[0]
        print(f"  {name:<13} {sol.wall_seconds:7.2f} s{'  INTERRUPTED' if interrupted else ''}", flush=True)
        if interrupted:
            raise _StrategyInterrupted(name)

    try:
        results = run_comparison(inst, time_limit=time_limit, gap=gap, on_done=on_done)
    except _StrategyInterrupted as exc:
        print(f"carbonsched: interrupted during strategy {exc}; no comparison (no solution files written)",
              file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("carbonsched: interrupted before every strategy finished; no comparison (no solution files written)",
              file=sys.stderr)
        return 130
    invalid = []
    for name, sol in results.items():
        report = check_solution(inst, sol, carbon=(name != "no-carbon"))
        if not report.ok:
            invalid.append(name)
        if out_dir is not None:
            sol.save(out_dir / f"{name}.h5")
    print(format_comparison(inst, results))
    if plot is not None:
        _plot_comparison(inst, results, plot)
    if out_dir is not None:
        print(f"wrote {len(results)} solution files to {out_dir}/")
    if invalid:
        print(f"checker: INVALID solutions from {', '.join(invalid)}")
        return 1
    print("checker: every solution OK (no-carbon checked without constraint 9)")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from carbonsched.formulations.baselines import STRATEGIES
    from carbonsched.instances.storage import load

    out_dir = check_output_dir(args.out_dir, "--out-dir", STRATEGIES, {"instance": args.instance})
    plot = None if args.plot is None else check_output_file(args.plot, "--plot", {"instance": args.instance})
    inst = load(args.instance)
    print(f"{inst.name}: S={inst.n_sites} T={inst.n_periods} J={inst.n_jobs} K={inst.n_classes}; running strategies")
    return _compare(inst, out_dir, args.time_limit, args.gap, None if plot is None else str(plot))


def _cmd_check(args: argparse.Namespace) -> int:
    from carbonsched.formulations.checker import check_solution
    from carbonsched.formulations.solution import Solution
    from carbonsched.instances.storage import load

    inst = load(args.instance)
    # a solution file modified after it was written is judged by the constraints, the mismatch a finding
    checksum_problems: list[str] = []
    sol = Solution.load(args.solution, checksum_problems=checksum_problems)
    report = check_solution(inst, sol, carbon=(sol.method != "no-carbon"))
    print(report.format())
    for problem in checksum_problems:
        print(f"integrity: {problem}")
    return 0 if report.ok and not checksum_problems else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from carbonsched.formulations.baselines import STRATEGIES
    from carbonsched.instances.shipped import default_instance_path, load_default
    from carbonsched.instances.summary import format_summary

    embedded = {"embedded instance": str(default_instance_path())}
    out_dir = check_output_dir(args.out_dir, "--out-dir", STRATEGIES, embedded)
    inst = load_default()
    print(f"embedded instance: {default_instance_path()}")
    print(format_summary(inst))
    print()
    return _compare(inst, out_dir, time_limit=60.0, gap=1e-6)


def _plot_comparison(inst, results, path: str) -> None:
    from carbonsched.formulations.compare import unproven
    from carbonsched.formulations.plots import plot_comparison

    print(f"wrote {plot_comparison(inst, results, path, unproven=unproven(results))}")


def _file_schema(path: str) -> str:
    """The root attribute ``schema`` of an HDF5 file (InputError naming the file when unreadable)."""
    import h5py

    if not Path(path).is_file():
        raise InputError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            schema = f.attrs.get("schema", "")
    except OSError as exc:
        raise InputError(f"{path}: not an HDF5 file ({exc})") from None
    return schema.decode() if isinstance(schema, bytes) else str(schema)


def _cmd_export(args: argparse.Namespace) -> int:
    from carbonsched.instances.storage import load

    targets = [t for t in (args.csv, args.parquet, args.netcdf) if t is not None]
    if not targets:
        raise InputError("export: give --csv DIR, --parquet DIR or --netcdf OUT.nc")
    schema = _file_schema(args.file)
    if schema == "carbonsched-instance":
        from carbonsched.instances.tables import instance_to_xarray, write_instance_folder

        inst = load(args.file)
        for folder, fmt in ((args.csv, "csv"), (args.parquet, "parquet")):
            if folder is not None:
                paths = write_instance_folder(inst, folder, fmt)
                print(f"wrote {len(paths)} tables to {folder}/ (the layout 'carbonsched import' reads)")
        if args.netcdf is not None:
            from carbonsched.formulations.tables import write_netcdf

            target = check_output_file(args.netcdf, "--netcdf", {"file": args.file})
            print(f"wrote {write_netcdf(instance_to_xarray(inst), target)}")
        return 0
    if schema != "carbonsched-solution":
        raise InputError(f"{args.file}: root attribute 'schema' is {schema!r}; expected carbonsched-instance or "
                         "carbonsched-solution")
    from carbonsched.formulations.solution import Solution
    from carbonsched.formulations.tables import solution_to_xarray, write_netcdf, write_solution_csv

    if args.instance is None:
        raise InputError("export: a solution needs its instance for the names: give --instance INSTANCE.h5")
    if args.parquet is not None:
        raise InputError("export: --parquet writes instances only; use --csv or --netcdf for a solution")
    inst = load(args.instance)
    sol = Solution.load(args.file)
    if args.csv is not None:
        paths = write_solution_csv(inst, sol, args.csv)
        print(f"wrote {len(paths)} tables to {args.csv}/: {', '.join(p.stem for p in paths)}")
    if args.netcdf is not None:
        target = check_output_file(args.netcdf, "--netcdf", {"file": args.file, "--instance": args.instance})
        print(f"wrote {write_netcdf(solution_to_xarray(inst, sol), target)}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from carbonsched.instances.storage import save
    from carbonsched.instances.summary import format_summary
    from carbonsched.instances.tables import read_instance_folder

    out = check_output_file(args.output, "--output", {})
    inst = read_instance_folder(args.folder)
    save(inst, out)
    print(f"wrote {out}")
    print(format_summary(inst))
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from carbonsched.formulations.plots import plot_solution
    from carbonsched.formulations.solution import Solution
    from carbonsched.instances.storage import load

    inst = load(args.instance)
    sol = Solution.load(args.solution)
    if sol.instance_name != inst.name:
        raise InputError(f"{args.solution}: solution of instance '{sol.instance_name}', not '{inst.name}'")
    folder = check_output_dir(args.out_dir, "--out-dir", [], {"instance": args.instance, "solution": args.solution})
    for path in plot_solution(inst, sol, folder, max_sites=args.sites):
        print(f"wrote {path}")
    return 0


def _cmd_frontier(args: argparse.Namespace) -> int:
    from carbonsched.formulations.frontier import DEFAULT_STRATEGIES, save_frontier, solve_frontier
    from carbonsched.instances.storage import load

    inputs = {"instance": args.instance}
    out = check_output_file(args.output, "--output", inputs)
    plot = None if args.plot is None else check_output_file(args.plot, "--plot", inputs)
    inst = load(args.instance)
    strategies = args.strategies or list(DEFAULT_STRATEGIES)
    budgets = sorted(args.budgets)
    print(f"{inst.name}: {len(strategies)} strategies × {len(budgets)} budgets "
          f"({', '.join(f'{b:g}' for b in budgets)} t; the instance's own is {inst.carbon_budget_t:g} t)", flush=True)
    front = solve_frontier(inst, budgets, strategies=strategies, time_limit=args.time_limit, gap=args.gap,
                           n_jobs=args.jobs)
    save_frontier(front, out, budgets_command=" ".join(f"{b:g}" for b in budgets))
    print(_format_frontier(front))
    if args.out_dir is not None:
        folder = check_output_dir(args.out_dir, "--out-dir", [], inputs)
        for (name, budget), sol in front.solutions.items():
            sol.save(folder / f"{name}-{budget:g}.h5")
    print(f"wrote {out}")
    if plot is not None:
        from carbonsched.formulations.frontier import load_frontier
        from carbonsched.formulations.plots import plot_frontier

        print(f"wrote {plot_frontier(load_frontier(out)[0], plot, title=f'{inst.name}: benefit against emissions')}")
    bad = [f"{r['strategy']} at {r['budget_t']:g} t" for r in front.rows if not r["checked"]]
    if bad:
        print(f"checker: INVALID solutions: {', '.join(bad)}")
        return 1
    print("checker: every solution OK")
    return 0


def _format_frontier(front) -> str:
    import math

    lines = [f"{'strategy':<13} {'C t':>7} {'status':<10} {'Z $':>12} {'bound $':>10} {'CO2 t':>7} {'s':>6}"]
    for r in front.rows:
        bound = f"{r['bound']:,.0f}" if math.isfinite(r["bound"]) else "-"
        lines.append(f"{r['strategy']:<13} {r['budget_t']:>7g} {r['status']:<10} {r['objective']:>12,.0f} "
                     f"{bound:>10} {r['emissions_t']:>7.1f} {r['wall_seconds']:>6.1f}")
    return "\n".join(lines)


COMMANDS = {
    "generate": _cmd_generate,
    "info": _cmd_info,
    "solve": _cmd_solve,
    "compare": _cmd_compare,
    "check": _cmd_check,
    "demo": _cmd_demo,
    "export": _cmd_export,
    "import": _cmd_import,
    "plot": _cmd_plot,
    "frontier": _cmd_frontier,
}


class _LogHandler(logging.StreamHandler):
    """The CLI's handler on the ``carbonsched`` logger (a class of its own so a second ``main`` replaces it)."""


def configure_logging(level: str) -> None:
    """Show the ``carbonsched`` logger's messages from ``level`` up on stderr, one line each."""
    logger = logging.getLogger("carbonsched")
    for handler in [h for h in logger.handlers if isinstance(h, _LogHandler)]:
        logger.removeHandler(handler)
    handler = _LogHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(level.upper())


def _out_of_memory(exc: MemoryError) -> str:
    """The one-line message for a MemoryError (its own text, if any, in parentheses)."""
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"out of memory ({detail}); no solution to write"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``carbonsched`` console command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet = getattr(args, "quiet", False)  # -q: no progress lines and, unless --log-level says otherwise, no info
    configure_logging(args.log_level or ("warning" if quiet else DEFAULT_LOG_LEVEL.get(args.command, "warning")))
    if getattr(args, "scip_log", False):
        from carbonsched.formulations.scip_run import show_scip_output

        scip_output = show_scip_output(True)
    else:
        from carbonsched.formulations.scip_run import scip_errors_to_log

        scip_output = scip_errors_to_log()  # a failure is one line of ours, not SCIP's trail of error lines
    from carbonsched.formulations.scip_run import memory_headroom_mb, sigterm_as_sigint

    if memory_headroom_mb() is not None:
        # under an address-space limit, scipy's OpenBLAS hung in its start-up when its per-thread buffers
        # could not be mapped (Benders, 40 sites, 450 MB); one BLAS thread (the solves are SCIP's) maps less
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

    try:
        # SIGTERM ends every command like Ctrl-C: a solve writes its best solution with status interrupted
        with scip_output, sigterm_as_sigint():
            try:
                return COMMANDS[args.command](args)
            except MemoryError as exc:
                message = _out_of_memory(exc)
                # free the failed run's frames (and its SCIP models) here, while SCIP's error lines still go
                # to the log: a model freed after a failed solve prints errors; freed at interpreter exit, it
                # crashed the process
                exc.__traceback__ = None
                del exc
                gc.collect()
                raise OutOfMemoryError(message) from None
    except CarbonschedError as exc:
        print(f"carbonsched: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("carbonsched: interrupted", file=sys.stderr)
        return 130
    except MemoryError as exc:
        # Python's MemoryError, numpy's, or SCIP's memory error -8 (PySCIPOpt raises MemoryError on it),
        # wherever a build or solve ran: one line and status 6, never a traceback
        print(f"carbonsched: error: {_out_of_memory(exc)}", file=sys.stderr)
        return OutOfMemoryError.exit_status
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
