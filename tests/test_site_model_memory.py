"""Cached site models hold only their own site's data: a worker keeps hundreds of them at 1,000 sites."""

from __future__ import annotations

import numpy as np
from carbonsched.formulations.energy import add_energy_block
from carbonsched.formulations.evaluate import SiteEnergySolver
from carbonsched.formulations.joint import add_compute_block
from carbonsched.formulations.scip_arrays import ArrayModel
from carbonsched.formulations.site_milp import make_site_milp
from carbonsched.instances.generator import generate


def arrays_of(obj, seen=None):
    """Every numpy array reachable from ``obj``'s attributes (dicts, lists, our objects), bar the instance."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from arrays_of(v, seen)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from arrays_of(v, seen)
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("carbonsched.formulations"):
        for name, v in vars(obj).items():
            if name != "inst":
                yield from arrays_of(v, seen)


def test_energy_block_stores_the_rows_of_its_sites_only():
    inst = generate(sites=6, periods=8, jobs=6, classes=2, seed=0)
    am = ArrayModel("block")
    sites = np.array([1, 4])
    cb = add_compute_block(am, inst, sites, coupling_rows=False, with_unserved=False)
    eb = add_energy_block(am, inst, sites, busy_gpu_ids=cb.busy)
    for name, rows in eb.site_ids.items():
        assert rows.shape == (2, inst.n_periods)
        full = eb.ids[name]
        assert full.shape == (inst.n_sites, inst.n_periods)
        np.testing.assert_array_equal(full[sites], rows)
        assert (np.delete(full, sites, axis=0) == -1).all()
    assert (eb.site_ids["ens"] >= 0).all()  # ens exists at every site of the block
    np.testing.assert_array_equal(eb.balance[sites], eb.site_balance)


def test_cached_site_models_hold_no_array_over_all_sites():
    inst = generate(sites=30, periods=8, jobs=20, classes=3, seed=1)
    S, T = inst.n_sites, inst.n_periods
    J, K = inst.n_jobs, inst.n_classes
    rng = np.random.default_rng(0)
    for site in (0, 7):
        milp = make_site_milp(inst, site)
        milp.solve(rng.uniform(0, 100, J), rng.uniform(0, 0.01, (K, T)), 1.0)
        energy = SiteEnergySolver(inst, site)
        for model in (milp, energy):
            sizes = [a.size for a in arrays_of(model)]
            assert sizes and max(sizes) < S * T, (type(model).__name__, max(sizes))
