"""The fast loader on the shards that the platform writes: exactly the tiles of the files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lensing_core.dataset.loader import iter_batches, load_tiles
from lensing_core.dataset.parquet import write_config_shards
from lensing_core.sims.catalog import SimCatalog
from lensing_core.storage import DataRoot


def test_loader_returns_the_written_tiles(
    data_root: DataRoot, catalog: SimCatalog, tmp_path: Path
) -> None:
    """Direct and cached reads give bitwise the tile files' values, ids and parameters."""
    report = write_config_shards(
        data_root, catalog, 200, "des_y3", catalog.sim_ids, max_shard_bytes=1 << 20
    )
    assert len(report.shards) > 1
    for cache in (None, tmp_path / "cache"):
        table = load_tiles(report.out_dir, cache_dir=cache)
        assert table.tiles.shape == (report.rows, 4, 128, 128)
        for i, sim in enumerate(report.sims_included):
            by_noise, _ = data_root.read_tiles(sim, 200, ("des_y3",), realizations=True)
            stack = by_noise["des_y3"]  # (R, 12, 4, n, n)
            per_sim = stack.shape[0] * 12
            rows = slice(per_sim * i, per_sim * (i + 1))
            np.testing.assert_array_equal(table.tiles[rows], stack.reshape(per_sim, 4, 128, 128))
            np.testing.assert_array_equal(table.sim_id[rows], sim)
            np.testing.assert_array_equal(
                table.columns["noise_realization"][rows], np.repeat(np.arange(len(stack)), 12)
            )
            np.testing.assert_array_equal(
                table.theta[rows], [[catalog[sim]["Omega_m"], catalog[sim]["S8"]]] * per_sim
            )
        seen = np.concatenate(
            [b.theta for b in iter_batches(table, 7, shuffle=True, rng=np.random.default_rng(1))]
        )
        assert sorted(map(tuple, seen)) == sorted(map(tuple, table.theta))
