"""Where a result came from: commit, package versions, CPU count and host, for results files.

Studies (``bench/scaling.py``, ``carbonsched frontier``) store :func:`provenance` as root attributes of
the HDF5 files they write, so a number can be traced to the code and machine that produced it.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

#: Distributions whose versions are recorded (those not installed are recorded as "absent").
PACKAGES: tuple[str, ...] = ("carbonsched", "pyscipopt", "numpy", "scipy", "numba", "joblib", "h5py", "pandas",
                             "xarray", "matplotlib", "highspy", "dask")


def git_commit(path: str | os.PathLike | None = None) -> str:
    """The commit of the checkout holding ``path`` (default: this package) with ``+dirty`` if modified;
    ``"unknown"`` when git or the repository is not available (an installed wheel)."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "") if commit else "unknown"


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed version of each distribution in ``packages`` ("absent" when not installed)."""
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def provenance() -> dict[str, str | int]:
    """Attributes describing the code and machine of a run: ``commit``, ``versions`` (one string,
    ``name=version`` separated by spaces), ``cpu_count``, ``host``, ``platform`` and ``python``."""
    versions = package_versions()
    return {
        "commit": git_commit(),
        "versions": " ".join(f"{k}={v}" for k, v in versions.items()),
        "cpu_count": int(os.cpu_count() or 0),
        "host": platform.node() or "unknown",
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
