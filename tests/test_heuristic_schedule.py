"""The primal heuristics' schedule: exponential back-off while a heuristic finds nothing, reset on a gain."""

import math

import numpy as np
import pytest
from carbonsched.decomp.schedule import HeuristicSchedule
from carbonsched.errors import InputError


def due_pattern(schedule: HeuristicSchedule, name: str, gains: list[float]) -> list[bool]:
    """Which of successive recoveries run ``name``; a run gains the next value of ``gains``."""
    out, z, left = [], 1e6, list(gains)
    while left:
        due = schedule.due(name)
        out.append(due)
        if due:
            gain = left.pop(0)
            schedule.report(name, z, z + gain, 0.1)
            z += gain
    return out


def test_a_failing_heuristic_backs_off_exponentially_up_to_the_cap():
    sch = HeuristicSchedule(("a",))
    pattern = due_pattern(sch, "a", [0.0] * 6)
    runs = [i for i, d in enumerate(pattern) if d]
    # periods 2, 4, 8, 8, 8 after each failure
    assert np.diff(runs).tolist() == [2, 4, 8, 8, 8]
    assert sch.records["a"].calls == 6 and sch.records["a"].improved == 0


def test_a_heuristic_with_its_own_cap_backs_off_only_to_it():
    sch = HeuristicSchedule(("a", "b", "c"), max_periods={"a": 1, "b": 2})
    assert all(due_pattern(sch, "a", [0.0] * 5))  # cap 1: every recovery, calls still counted
    assert sch.records["a"].calls == 5 and sch.records["a"].improved == 0
    runs = [i for i, d in enumerate(due_pattern(sch, "b", [0.0] * 4)) if d]
    assert np.diff(runs).tolist() == [2, 2, 2]
    runs = [i for i, d in enumerate(due_pattern(sch, "c", [0.0] * 4)) if d]
    assert np.diff(runs).tolist() == [2, 4, 8]  # the others keep the common cap
    for bad in ({"z": 1}, {"a": 0}):
        with pytest.raises(ValueError, match="max_periods"):
            HeuristicSchedule(("a",), max_periods=bad)


def test_a_gain_resets_the_back_off_and_a_negligible_one_does_not():
    sch = HeuristicSchedule(("a", "b"))
    runs = [i for i, d in enumerate(due_pattern(sch, "a", [0.0, 0.0, 500.0, 0.0])) if d]
    assert np.diff(runs).tolist() == [2, 4, 1]  # after the gain of 500 $ it runs at the next recovery
    # +0.26 $ on 1 M$ is below the relative threshold: it counts as a failure (but its gain is recorded)
    runs = [i for i, d in enumerate(due_pattern(sch, "b", [0.26, 0.26, 0.26])) if d]
    assert np.diff(runs).tolist() == [2, 4]
    assert sch.records["b"].gain == pytest.approx(0.78)
    assert sch.records["b"].improved == 0
    assert sch.summary()["a"]["improved"] == 1


def test_the_first_incumbent_counts_as_an_improvement():
    sch = HeuristicSchedule(("a",))
    sch.report("a", -math.inf, 5.0, 1.0)
    assert sch.records["a"].improved == 1 and sch.records["a"].gain == 0.0
    assert sch.due("a")


def test_state_round_trip_and_bad_state_named():
    sch = HeuristicSchedule(("a", "b"))
    due_pattern(sch, "a", [0.0, 0.0, 0.0])
    sch.report("b", 1.0, 1000.0, 2.5)
    state = sch.state_dict()
    copy = HeuristicSchedule(("a", "b"))
    copy.load_state_dict(state)
    assert copy.records == sch.records
    assert [copy.due("a") for _ in range(10)] == [sch.due("a") for _ in range(10)]
    bad = dict(state)
    bad["heuristic_counts"] = state["heuristic_counts"].copy()
    bad["heuristic_counts"][0, 3] = bad["heuristic_counts"][0, 2]  # wait must stay below the period
    with pytest.raises(InputError, match="heuristic_counts"):
        HeuristicSchedule(("a", "b")).load_state_dict(bad)
    with pytest.raises(InputError, match="heuristic_totals"):
        HeuristicSchedule(("a", "b")).load_state_dict({"heuristic_counts": state["heuristic_counts"]})
