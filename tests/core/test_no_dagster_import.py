"""``lensing_core`` is plain scientific Python: importing any of it never loads Dagster."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

#: The modules the brief names; every other module under ``lensing_core`` is found by walking.
MODULES = (
    "lensing_core",
    "lensing_core.sky.tiles",
    "lensing_core.sims.synthetic",
    "lensing_core.config",
    "lensing_core.storage",
    "lensing_core.sky.summaries",
)

# Imports the named modules, then every module under lensing_core, one at a time, and records
# after each import whether any dagster module has been loaded (so an offender is named).
_PROBE = """
import importlib, json, pkgutil, sys
names = list(sys.argv[1:])
import lensing_core
names += [m.name for m in pkgutil.walk_packages(lensing_core.__path__, "lensing_core.")]
loaded_dagster = {}
for name in dict.fromkeys(names):
    importlib.import_module(name)
    loaded_dagster[name] = sorted(m for m in sys.modules if m.split(".")[0] == "dagster")
print(json.dumps(loaded_dagster))
"""


def _probe(code: str, *args: str) -> str:
    """Run *code* in a fresh interpreter and return its last line of output."""
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_lensing_core_never_imports_dagster() -> None:
    """Importing lensing_core and all its submodules leaves ``dagster`` out of ``sys.modules``."""
    report: dict[str, list[str]] = json.loads(_probe(_PROBE, *MODULES))
    assert set(MODULES) <= set(report)
    assert len(report) > len(MODULES)  # the walk found the other submodules too
    offenders = {name: mods for name, mods in report.items() if mods}
    assert offenders == {}, f"first module to load dagster: {next(iter(offenders), None)}"


def test_probe_detects_dagster() -> None:
    """The same check sees Dagster when something does import it (the test can fail)."""
    if importlib.util.find_spec("dagster") is None:  # locates it without importing it here
        pytest.skip("dagster is not installed")
    code = "import sys, dagster; print(any(m.split('.')[0] == 'dagster' for m in sys.modules))"
    assert _probe(code) == "True"
