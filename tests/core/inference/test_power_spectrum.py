"""Band powers of a configuration: every shard row, in shard order, written atomically."""

from __future__ import annotations

import numpy as np
import pytest

from lensing_core.dataset.loader import load_tiles
from lensing_core.dataset.parquet import write_config_shards
from lensing_core.inference.power_spectrum import compute_band_powers
from lensing_core.io import InputMissingError, read_npz
from lensing_core.products import make_kappa, make_tiles
from lensing_core.sims.catalog import synthetic_catalog
from lensing_core.sims.sources import SyntheticSource
from lensing_core.sky.noise import noise_power
from lensing_core.sky.power import PAIRS, TilePowerEstimator
from lensing_core.storage import DataRoot, ShardSet

SIMS, LMAX = (3, 109), 200


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> DataRoot:
    root = DataRoot(tmp_path_factory.mktemp("cl"))
    catalog = synthetic_catalog(110)
    for sim_id in SIMS:
        make_kappa(root, SyntheticSource(catalog, nside=128), sim_id)
        make_tiles(root, sim_id, LMAX)
    for noise in ("noiseless", "des_y3"):
        write_config_shards(root, catalog, LMAX, noise, SIMS)
    return root


def test_band_powers_of_every_row(root: DataRoot) -> None:
    result = compute_band_powers(root, LMAX, "des_y3")
    table = load_tiles(root.shards(LMAX, "des_y3").dir, pattern=ShardSet.GLOB)
    assert result.band_powers.shape == (len(table), 10, 10) == (2 * 48, 10, 10)
    estimator = TilePowerEstimator(128, LMAX)
    np.testing.assert_allclose(
        result.band_powers[[0, 50]], estimator.band_powers(table.tiles[[0, 50]])
    )
    arrays, meta = read_npz(result.path, ("band_powers", "edges"), what="band powers")
    np.testing.assert_array_equal(arrays["band_powers"], result.band_powers)
    np.testing.assert_array_equal(arrays["edges"], estimator.edges)
    assert meta["config"] == "lmax_200_des_y3"
    assert meta["rows"] == 96
    assert result.path == root.root / "models" / "cl" / "lmax200_des_y3" / "band_powers.npz"
    assert not [p for p in root.tmp_root.rglob("*") if p.is_file()]
    # noisy minus noiseless band powers: about the shape-noise power of each bin
    clean = compute_band_powers(root, LMAX, "noiseless").band_powers  # realisation 0 rows
    auto = [PAIRS.index((i, i)) for i in range(4)]
    excess = (result.band_powers[:12] - clean[:12])[:, auto].mean(axis=(0, 2))
    np.testing.assert_allclose(excess, noise_power("des_y3"), rtol=0.15)
    assert set(result.to_metadata()) >= {"path", "config", "mean_auto_band_powers"}


def test_bad_requests_name_the_configuration(root: DataRoot) -> None:
    with pytest.raises(ValueError, match=r"configuration lmax_200_des_y3: tiles of 128 px"):
        compute_band_powers(root, LMAX, "des_y3", n_bands=40)
    with pytest.raises(InputMissingError, match="lmax_400_des_y3"):
        compute_band_powers(root, 400, "des_y3")
