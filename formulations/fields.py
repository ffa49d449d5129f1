"""The names SOLUTION.md gives to a solution file's parts: schema tag, root attributes, datasets, terms.

Plain constants with no imports, so that the model builders (``energy``), the solution object
(``solution``) and the checker can all name the same fields without depending on each other.
"""

from __future__ import annotations

SCHEMA = "carbonsched-solution"
SCHEMA_VERSION = 1

#: Objective terms in SOLUTION.md order; each is stored signed as it enters Z.
BREAKDOWN_TERMS: tuple[str, ...] = (
    "training_value",
    "inference_revenue",
    "latency_cost",
    "unserved_penalty",
    "grid_cost",
    "export_revenue",
    "gen_cost",
    "startup_cost",
    "battery_cost",
    "ens_cost",
    "carbon_cost",
)

#: The (S,T) datasets of ``/energy`` in SOLUTION.md order.
ENERGY_FIELDS: tuple[str, ...] = (
    "grid_import",
    "grid_export",
    "grid_importing",
    "charge",
    "discharge",
    "bat_charging",
    "soc",
    "gen",
    "gen_on",
    "gen_start",
    "renewable_used",
    "ens",
)
#: The binary (S,T) datasets of ``/energy``, stored as int8 in {0, 1}.
ENERGY_BINARY_FIELDS: tuple[str, ...] = ("grid_importing", "bat_charging", "gen_on", "gen_start")
#: The continuous (S,T) datasets of ``/energy``, stored as float64.
ENERGY_FLOAT_FIELDS: tuple[str, ...] = tuple(f for f in ENERGY_FIELDS if f not in ENERGY_BINARY_FIELDS)

#: Root attributes of a solution file (other root attributes are optional and kept in ``extra``).
ROOT_ATTRS: tuple[str, ...] = (
    "schema",
    "schema_version",
    "instance_name",
    "method",
    "status",
    "objective",
    "bound",
    "gap",
    "certified",
    "emissions_t",
    "wall_seconds",
)

#: The columns of ``/trace`` (s, $, $, iteration count).
TRACE_FIELDS: tuple[str, ...] = ("seconds", "primal", "dual", "iteration")
