"""The ``carbonsched`` command line: generate, info, solve, check, compare, demo.

Exit statuses: 0 success, 1 a checked solution is invalid, 2 bad input (one-line message, no
traceback), 3 infeasible instance, 4 time limit without a solution, 5 an output file could not be
written (the previous file is intact), 130 interrupted without a solution to write (or a ``compare``
whose strategies did not all finish). Outputs are checked before any work starts, and SIGTERM is
handled like Ctrl-C (see docs/reliability.md).

Outside the benchmarks, the CLI is the one place that prints: it attaches the handler of the ``carbonsched`` logger
(``--log-level``), prints the solve methods' progress events, and switches SCIP's own log on
(``--scip-log``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from carbonsched import __version__
from carbonsched.errors import CarbonschedError, InputError
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
    solve.add_argument("--initial", help="a solution file whose compute plan is the first incumbent")
    solve.add_argument("--close", default="auto", choices=("auto", "yes", "no"),
                       help="lagrangian: finish with the joint MILP seeded with the incumbent when the gap is "
                            "still open (auto: on instances of at most 1000 site-periods; default auto)")
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
    return parser


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
    for name, path in inputs.items():
        if path and _same_file(text, path):
            raise InputError(f"{flag}: '{text}' is the {name} file '{path}'; a run never writes over its inputs")
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
        for arg, path in inputs.items():
            if path and _same_file(target, path):
                raise InputError(f"{flag}: '{target}' is the {arg} file '{path}'; a run never writes over its inputs")
    _check_folder_writable(text, flag)
    return Path(text)


def _cmd_solve(args: argparse.Namespace) -> int:
    from carbonsched.formulations.checker import check_solution
    from carbonsched.formulations.plan import ComputePlan
    from carbonsched.formulations.solution import Solution
    from carbonsched.instances.storage import load

    out = check_output_file(args.output, "--output", {"instance": args.instance, "--initial": args.initial})
    inst = load(args.instance)
    initial = None
    if args.initial is not None:
        initial = ComputePlan.from_solution(Solution.load(args.initial)).validate(inst)
    print(f"{inst.name}: S={inst.n_sites} T={inst.n_periods} J={inst.n_jobs} K={inst.n_classes}; "
          f"method {args.method}, time limit {args.time_limit or 'none'}, gap {args.gap:g}", flush=True)
    progress = None if args.quiet else _print_progress
    if args.method == "monolithic":
        from carbonsched.formulations.monolithic import solve_monolithic

        sol = solve_monolithic(inst, time_limit=args.time_limit, gap=args.gap, threads=args.threads, seed=args.seed,
                               progress=progress, initial=initial)
    elif args.method == "scip-benders":
        from carbonsched.decomp.scip_benders import solve_scip_benders

        sol = solve_scip_benders(inst, time_limit=args.time_limit, gap=args.gap, seed=args.seed, progress=progress)
    elif args.method == "greedy":
        from carbonsched.decomp.heuristics import solve_greedy

        sol = solve_greedy(inst, time_limit=args.time_limit, progress=progress)
    elif args.method == "local-search":
        from carbonsched.decomp.heuristics import solve_local_search

        sol = solve_local_search(inst, initial=initial, time_limit=args.time_limit or 60.0, seed=args.seed,
                                 progress=progress)
    else:
        from carbonsched.decomp.parallel import ParallelConfig

        config = ParallelConfig(n_jobs=args.jobs, backend=args.backend, scheduler=args.scheduler)
        if args.method == "benders":
            from carbonsched.decomp.benders import solve_benders

            sol = solve_benders(inst, time_limit=args.time_limit, gap=args.gap, config=config, initial=initial,
                                progress=progress, seed=args.seed)
        else:
            from carbonsched.decomp.lagrangian import solve_lagrangian

            close = {"auto": None, "yes": True, "no": False}[args.close]
            sol = solve_lagrangian(inst, time_limit=args.time_limit, gap=args.gap, config=config, initial=initial,
                                   close=close, progress=progress, seed=args.seed)
    sol.save(out)
    report = check_solution(inst, sol)
    print(f"status {sol.status.value}  Z = {sol.objective:.2f} $  bound = {sol.bound:.2f} $  gap = {sol.gap:.3%}  "
          f"certified {'yes' if sol.certified else 'no'}  emissions = {sol.emissions_t:.2f} t  "
          f"({sol.wall_seconds:.1f} s)")
    print(f"check: {'OK' if report.ok else 'INVALID'}; wrote {out}")
    return 0 if report.ok else 1


class _StrategyInterrupted(Exception):
    """A strategy of ``compare`` was stopped by Ctrl-C or SIGTERM (its result is no verdict)."""


def _compare(inst, out_dir: Path | None, time_limit: float | None, gap: float | None) -> int:
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
    inst = load(args.instance)
    print(f"{inst.name}: S={inst.n_sites} T={inst.n_periods} J={inst.n_jobs} K={inst.n_classes}; running strategies")
    return _compare(inst, out_dir, args.time_limit, args.gap)


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


COMMANDS = {
    "generate": _cmd_generate,
    "info": _cmd_info,
    "solve": _cmd_solve,
    "compare": _cmd_compare,
    "check": _cmd_check,
    "demo": _cmd_demo,
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``carbonsched`` console command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level or DEFAULT_LOG_LEVEL.get(args.command, "warning"))
    if getattr(args, "scip_log", False):
        from carbonsched.formulations.scip_run import show_scip_output

        scip_output = show_scip_output(True)
    else:
        scip_output = contextlib.nullcontext()
    from carbonsched.formulations.scip_run import sigterm_as_sigint

    try:
        # SIGTERM ends every command like Ctrl-C: a solve writes its best solution with status interrupted
        with scip_output, sigterm_as_sigint():
            return COMMANDS[args.command](args)
    except CarbonschedError as exc:
        print(f"carbonsched: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("carbonsched: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
