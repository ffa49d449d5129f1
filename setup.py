"""Package discovery: the design's top-level folders become subpackages of ``carbonsched``.

The repository root is the ``carbonsched`` package; every folder below ``instances/``,
``formulations/``, ``decomp/`` and ``bench/`` that holds an ``__init__.py`` is found here, so no
subpackage can be left out of the wheel. Everything else is configured in ``pyproject.toml``.
"""

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

LAYERS = ("instances", "formulations", "decomp", "bench")


class BuildPy(build_py):
    """The root package's modules, less this build script (it lives in the same folder)."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if not (package == "carbonsched" and m[1] == "setup")]


setup(
    packages=["carbonsched"]
    + [f"carbonsched.{name}" for name in find_packages(include=[*LAYERS, *(f"{layer}.*" for layer in LAYERS)])],
    package_dir={"carbonsched": "."},
    cmdclass={"build_py": BuildPy},
)
