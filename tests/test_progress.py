"""Progress events, logging and SCIP's log switch: what the solve methods report and what the CLI shows."""

from __future__ import annotations

import math

import pytest
from carbonsched.cli import main
from carbonsched.decomp.heuristics import solve_greedy, solve_local_search
from carbonsched.decomp.scip_benders import solve_scip_benders
from carbonsched.formulations.checker import check_solution
from carbonsched.formulations.monolithic import solve_monolithic
from carbonsched.formulations.scip_run import SCIP_OUTPUT_ENV, configure, scip_output_shown, show_scip_output
from carbonsched.instances import save
from carbonsched.progress import ProgressEvent, ProgressReporter

from .edge_cases import random_small

REL = 1e-9


def _assert_events_of(sol, events: list[ProgressEvent], certified: bool) -> None:
    assert events and all(isinstance(e, ProgressEvent) for e in events)
    seconds = [e.seconds for e in events]
    assert seconds == sorted(seconds)
    assert events[-1].phase == "done"
    assert events[-1].primal == pytest.approx(sol.objective, rel=REL)
    if certified:
        assert events[-1].bound == pytest.approx(sol.bound, rel=REL)
    for e in events:  # no reported primal beats the final answer's, no bound falls below it
        assert e.primal <= sol.objective + 1e-6 * max(1.0, abs(sol.objective))
        if certified:
            assert e.bound >= sol.objective - 1e-6 * max(1.0, abs(sol.objective))
        e.format()  # never raises on inf


@pytest.mark.parametrize("solve", [solve_monolithic, solve_scip_benders], ids=["monolithic", "scip-benders"])
def test_scip_solves_report_events_in_benefit_terms(solve):
    inst = random_small(0)
    events: list[ProgressEvent] = []
    sol = solve(inst, time_limit=60, progress=events.append)
    assert check_solution(inst, sol).ok
    assert events[0].phase == "build"
    assert any(e.phase in ("root", "search") for e in events)
    _assert_events_of(sol, events, certified=True)
    # scip-benders minimizes −Z inside SCIP: its events must be negated back (a finite bound ≥ the answer)
    assert all(e.bound >= sol.objective - 1e-6 * abs(sol.objective) for e in events if math.isfinite(e.bound))


def test_heuristics_report_events():
    inst = random_small(1)
    events: list[ProgressEvent] = []
    greedy = solve_greedy(inst, progress=events.append)
    assert check_solution(inst, greedy).ok
    assert sum(e.phase == "search" for e in events) == len(greedy.trace)  # one per plan scored
    _assert_events_of(greedy, events, certified=False)
    events.clear()
    local = solve_local_search(inst, time_limit=20, iteration_limit=50, progress=events.append)
    assert check_solution(inst, local).ok
    assert local.objective >= greedy.objective - 1e-6 * abs(greedy.objective)
    _assert_events_of(local, events, certified=False)


def test_reporter_throttles_unforced_reports(monkeypatch):
    clock = iter([10.5, 11.0, 13.0, 13.1, 13.2])
    monkeypatch.setattr("carbonsched.progress.time.perf_counter", lambda: next(clock))
    events: list[ProgressEvent] = []
    report = ProgressReporter(events.append, t0=10.0, interval=2.0)
    report("search", 1.0)  # t = 10.5: first report goes out
    report("search", 2.0)  # t = 11.0: within 2 s, dropped
    report("search", 3.0)  # t = 13.0: 2.5 s later, goes out
    report("search", 4.0, force=True)  # t = 13.1: forced
    report("search", 5.0)  # t = 13.2: dropped
    assert [(e.seconds, e.primal) for e in events] == [(0.5, 1.0), (3.0, 3.0), (pytest.approx(3.1), 4.0)]
    ProgressReporter(None, t0=0.0)("search", 1.0, force=True)  # no receiver: nothing happens


def test_scip_output_switch(capfd, monkeypatch):
    monkeypatch.delenv(SCIP_OUTPUT_ENV, raising=False)
    inst = random_small(0)
    assert not scip_output_shown()
    solve_monolithic(inst, time_limit=30)
    assert "presolving" not in capfd.readouterr().out
    with show_scip_output():
        assert scip_output_shown()
        solve_monolithic(inst, time_limit=30)
    assert not scip_output_shown()
    assert "presolving" in capfd.readouterr().out
    from pyscipopt import Model

    with show_scip_output():
        model = Model()
        configure(model, time_limit=1.0, gap=None, quiet=True)  # an explicit quiet wins
        model.optimize()
    assert "presolving" not in capfd.readouterr().out


def test_cli_prints_progress_and_logs_at_the_chosen_level(tmp_path, capsys):
    inst_path, out = tmp_path / "i.h5", tmp_path / "s.h5"
    save(random_small(2), inst_path)
    assert main(["solve", str(inst_path), "--method", "greedy", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert any(line.split()[1:2] == ["done"] for line in captured.out.splitlines()), captured.out
    assert "INFO carbonsched.decomp.heuristics.greedy" in captured.err
    assert "DEBUG" not in captured.err
    assert main(["solve", str(inst_path), "--method", "greedy", "-q", "--log-level", "debug", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "search" not in captured.out and "check: OK" in captured.out
    assert "DEBUG carbonsched.decomp.heuristics.greedy" in captured.err
    assert main(["info", str(inst_path), "--log-level", "error"]) == 0
    assert capsys.readouterr().err == ""


def test_cli_prints_a_heartbeat_when_a_phase_reports_nothing(capsys):
    import time

    from carbonsched.cli import _ProgressPrinter
    from carbonsched.progress import ProgressEvent

    with _ProgressPrinter(interval=0.2) as printer:
        printer(ProgressEvent(1.0, "lp", float("-inf"), 123.0, 0, "LP relaxation bound"))
        time.sleep(1.3)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert "LP relaxation bound" in lines[0]
    beats = [line for line in lines[1:] if "still working" in line]
    assert len(beats) >= 2 and all(" lp " in line and "123.00" in line for line in beats)
    seconds = [float(line.split("s")[0]) for line in lines]
    assert seconds == sorted(seconds) and seconds[-1] > 1.0
    assert all("inf" not in line for line in lines)
