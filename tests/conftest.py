"""Shared fixtures: one small instance in which every feature (jobs, classes, battery, generator) is live."""

from __future__ import annotations

import numpy as np
import pytest
from carbonsched.instances import Instance, make_instance

T, S, J, K = 4, 3, 4, 2


def build_small_instance() -> Instance:
    """T=4, S=3, J=4, K=2; negative prices, an unreachable (inf-latency) route, no carbon budget."""
    t = np.arange(T)
    return make_instance(
        T,
        S,
        n_jobs=J,
        n_classes=K,
        period_hours=0.5,
        voll=5000.0,
        carbon_budget_t=float("inf"),
        carbon_price=40.0,
        name="small",
        sites={
            "name": ["Zürich", "Oslo", "東京"],
            "lat": [47.4, 59.9, 35.7],
            "lon": [8.5, 10.7, 139.7],
            "gpus": [8, 4, 2],
            "gpu_idle_kw": [0.1, 0.2, 0.15],
            "gpu_busy_kw": [0.5, 0.6, 0.4],
            "pue": 1.1 + 0.05 * np.add.outer(np.arange(S), t),
            "renewable_mw": 0.5 * np.add.outer(np.arange(S), t % 2),
            "grid_import_mw": [5.0, 4.0, 3.0],
            "grid_export_mw": [1.0, 0.5, 0.0],
            "price_buy": np.array([[50, 60, -10, 40], [30, 35, 45, 55], [70, 20, 25, 90]], dtype=float),
            "price_sell": np.array([[45, 50, -20, 35], [30, 30, 40, 50], [60, 10, 25, 80]], dtype=float),
            "grid_co2": 0.1 * np.add.outer(np.arange(1, S + 1), t),
            "gen_max_mw": [2.0, 0.0, 1.0],
            "gen_min_mw": [0.5, 0.0, 0.2],
            "gen_cost": [80.0, 0.0, 95.0],
            "gen_startup_cost": [100.0, 0.0, 50.0],
            "gen_co2": [0.5, 0.0, 0.4],
            "gen_min_up": [2, 1, 3],
            "gen_min_down": [1, 2, 1],
            "bat_energy_mwh": [4.0, 0.0, 2.0],
            "bat_power_mw": [2.0, 0.0, 1.0],
            "bat_eta_charge": [0.95, 1.0, 0.9],
            "bat_eta_discharge": [0.9, 1.0, 0.85],
            "bat_soc0_mwh": [2.0, 0.0, 1.0],
            "bat_cost": [1.0, 0.0, 2.0],
        },
        jobs={
            "name": ["train-a", "train-b", "finetune", "eval"],
            "gpus": [2, 4, 1, 1],
            "duration": [2, 1, 3, 1],
            "release": [0, 1, 0, 2],
            "deadline": [3, 4, 4, 4],
            "value": [100.0, 50.0, 20.0, -5.0],
            "mandatory": [True, False, False, True],
            "allowed": [[True, True, False], [False, True, False], [True, True, True], [False, False, True]],
        },
        inference={
            "name": ["chat", "batch"],
            "demand": np.array([[1.0, 2.0, 3.0, 1.5], [0.0, 0.5, 0.0, 2.0]]),
            "revenue": [3.0, 1.0],
            "penalty": [5.0, 0.0],
            "latency_ms": np.array([[20.0, 80.0, np.inf], [10.0, 30.0, 150.0]]),
            "latency_slo_ms": [50.0, 100.0],
            "latency_cost": [0.01, 0.0],
        },
    )


@pytest.fixture(scope="session")
def small_instance_factory():
    """The builder itself, for module- or session-scoped fixtures."""
    return build_small_instance


@pytest.fixture
def small_instance() -> Instance:
    """A fresh copy of the small instance (tests may mutate it)."""
    return build_small_instance()


def routing_priced_from_afar(monkeypatch, *, stop_gap: float | None = None) -> None:
    """Price routing columns into the LP relaxation on any instance, from one site per class and one column per
    class-period and round (so that pricing does the work); with ``stop_gap``, stop once the bound is within
    that share of the restricted optimum (the LP's routing then left partial)."""
    import carbonsched.formulations.lp_relaxation as lpr

    monkeypatch.setattr(lpr, "ROUTING_PRICING_MIN", 0)
    monkeypatch.setattr(lpr, "ROUTING_NEAREST", 1)
    monkeypatch.setattr(lpr, "ROUTING_DRAWN", 0)
    monkeypatch.setattr(lpr, "ROUTING_COLUMNS", 1)
    if stop_gap is not None:
        monkeypatch.setattr(lpr, "ROUTING_GAP", stop_gap)


@pytest.fixture
def routers_made(monkeypatch) -> list:
    """The ``routing`` argument of every PlacementRouter built while the test runs (None: every column)."""
    from carbonsched.decomp.rounding import PlacementRouter

    made: list = []
    build = PlacementRouter.__init__

    def recording(self, inst, *, routing=None):
        made.append(routing)
        build(self, inst, routing=routing)

    monkeypatch.setattr(PlacementRouter, "__init__", recording)
    return made
