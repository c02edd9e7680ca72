"""Test session set-up: every test runs against temporary data roots and Dagster instances.

Nothing here depends on the ``LENSING_*`` variables of the shell that runs the tests: the
platform reads its settings only when its definitions load, and the tests build their
definitions from settings of their own (:mod:`tests.fixtures.dagster`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# healpy's OpenMP runtime otherwise spins at every barrier: on a busy 2-core machine a tiny
# healpy.rotate_alm then takes 0.5 s instead of 0.1 ms (read when healpy is first imported).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

pytest_plugins = [
    "tests.fixtures.maps",
    "tests.fixtures.dagster",
    "tests.fixtures.slurm",
    "tests.fixtures.postgres",
]


@pytest.fixture(autouse=True, scope="session")
def _session_dagster_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A DAGSTER_HOME of the session, so that no test touches the checkout's instance."""
    home = tmp_path_factory.mktemp("dagster_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(home))
        yield home
