"""Test session set-up: every test runs against temporary data roots and Dagster instances.

The platform reads its settings from ``LENSING_*`` variables when ``lensing_assets`` is first
imported, so they are fixed here, before any test module imports it: the default synthetic
suite, and a data root and ``DAGSTER_HOME`` in a temporary folder (never the checkout's).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="lensing-tests-"))
for _name in [n for n in os.environ if n.startswith("LENSING_") or n.startswith("DAGSTER_CLI_")]:
    del os.environ[_name]
os.environ["LENSING_DATA_ROOT"] = str(_SESSION_DIR / "data")
os.environ["DAGSTER_HOME"] = str(_SESSION_DIR / "dagster_home")
os.environ["LENSING_NTHREADS"] = "2"
os.environ["LENSING_NSIDE"] = "128"  # small synthetic maps for the definitions' own resources
# healpy's OpenMP runtime otherwise spins at every barrier: on a busy 2-core machine a tiny
# healpy.rotate_alm then takes 0.5 s instead of 0.1 ms (read when healpy is first imported).
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
(_SESSION_DIR / "dagster_home").mkdir()

pytest_plugins = ["tests.fixtures.maps", "tests.fixtures.dagster"]
