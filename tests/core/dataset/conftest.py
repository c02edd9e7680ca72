"""Fixtures of the dataset tests: real tile files of a few sims at lmax 200 (128 x 128 tiles).

The tiles of :data:`SIMS` (the fiducial 109 among them) are made once per session from
nside-128 synthetic maps, and every test gets a fresh data root holding a copy of them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lensing_core.products import make_kappa, make_tiles
from lensing_core.sims.catalog import SimCatalog, synthetic_catalog
from lensing_core.sims.sources import SyntheticSource
from lensing_core.storage import DataRoot

SIMS = (3, 7, 109)
LMAX = 200
N_PIX = 128


@pytest.fixture(scope="session")
def catalog() -> SimCatalog:
    """Synthetic Gower-Street-like design, sims 1..110 (109 is the fiducial)."""
    return synthetic_catalog(110)


@pytest.fixture(scope="session")
def tile_source(tmp_path_factory: pytest.TempPathFactory, catalog: SimCatalog) -> DataRoot:
    """Real tiles (all noise levels) of SIMS at LMAX, from nside-128 synthetic maps."""
    root = DataRoot(tmp_path_factory.mktemp("tile-source"))
    source = SyntheticSource(catalog, nside=N_PIX)
    for sim_id in SIMS:
        make_kappa(root, source, sim_id)
        make_tiles(root, sim_id, LMAX)
    return root


@pytest.fixture
def data_root(tmp_path: Path, tile_source: DataRoot) -> DataRoot:
    """A data root of this test's own with a copy of the session's tile files."""
    root = DataRoot(tmp_path / "root")
    shutil.copytree(tile_source.root / "tiles", root.root / "tiles")
    return root
