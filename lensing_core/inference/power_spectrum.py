"""The power-spectrum baseline of one configuration: band powers of every tile row.

The band powers (:class:`lensing_core.sky.power.TilePowerEstimator`) are computed from the
same shard rows the field compressor reads, in the same row order, so the field's split
(``split.json``: sims per set, fiducial holdout, noise realisations) indexes them directly.
Written to ``models/cl/lmax{L}_{noise}/band_powers.npz`` (array ``band_powers``
``(n_rows, 10, n_bands)``, ``edges``, and a metadata record with the estimator's settings,
the shards' content hash and the fingerprint of the per-row sim ids).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lensing_core._types import FloatArray
from lensing_core.dataset.schema import config_name
from lensing_core.dataset.splits import sim_ids_sha256
from lensing_core.inference.pipeline import open_config
from lensing_core.io import write_npz
from lensing_core.sky.power import PAIRS, TilePowerEstimator
from lensing_core.storage import DataRoot

logger = logging.getLogger(__name__)

BATCH_ROWS = 64  # tiles transformed at once: 64 x 4 x 512^2 complex128 is 1 GiB at lmax 1000


@dataclass(frozen=True)
class BandPowersResult:
    """
    The band powers of one configuration, written.

    Attributes
    ----------
    path
        ``models/cl/lmax{L}_{noise}/band_powers.npz``.
    band_powers
        ``(n_rows, 10, n_bands)`` in steradians, rows in shard order.
    edges
        Science band edges ``(n_bands + 1,)``.
    record
        The metadata written with them.
    """

    path: Path
    band_powers: FloatArray
    edges: FloatArray
    record: dict[str, Any]

    def to_metadata(self) -> dict[str, Any]:
        """The file, the settings and the auto band powers averaged over every row."""
        auto = [PAIRS.index((i, i)) for i in range(4)]
        return {
            "path": self.path,
            **self.record,
            "mean_auto_band_powers": self.band_powers[:, auto].mean(axis=0).tolist(),
        }


def compute_band_powers(
    root: DataRoot,
    lmax: int,
    noise_level: str,
    *,
    n_bands: int = 10,
    cache_dir: Path | None = None,
) -> BandPowersResult:
    """
    Band powers of every tile row of one configuration, written atomically.

    Parameters
    ----------
    root
        The data root.
    lmax, noise_level
        The configuration.
    n_bands
        Linear science bands from the tile's fundamental ell to ``0.96 lmax``.
    cache_dir
        See :func:`lensing_core.inference.pipeline.open_config`.

    Raises
    ------
    lensing_core.io.InputMissingError
        No shards for the configuration.
    ValueError
        Tiles too small for the bands, or band powers with non-finite values: the message
        names the configuration (and the shards).
    """
    start = time.perf_counter()
    label = f"configuration {config_name(lmax, noise_level)}"
    table, report = open_config(root, lmax, noise_level, cache_dir=cache_dir)
    n_pix = table.tile_shape[-1]
    try:
        estimator = TilePowerEstimator(n_pix, lmax, n_bands=n_bands)
    except ValueError as err:
        raise ValueError(f"{label}: {err}") from None
    out = np.empty((len(table), len(PAIRS), n_bands))
    for first in range(0, len(table), BATCH_ROWS):
        rows = slice(first, first + BATCH_ROWS)
        out[rows] = estimator.band_powers(table.tiles[rows])
    bad = np.flatnonzero(~np.isfinite(out).all(axis=(1, 2)))
    if len(bad):
        msg = (
            f"{label}: band powers of {len(bad)} rows are not finite (first row {bad[0]}, "
            f"sim {table.sim_id[bad[0]]}) in {report.out_dir}"
        )
        raise ValueError(msg)
    record = {
        "config": config_name(lmax, noise_level),
        "rows": len(table),
        "n_pix": n_pix,
        "lmax": lmax,
        "n_bands": n_bands,
        "edge_margin": estimator.edge_margin,
        "ell_fundamental": estimator.ell_fundamental,
        "pairs": [list(p) for p in PAIRS],
        "shards_content_hash": report.content_hash,
        "sim_ids_sha256": sim_ids_sha256(table.sim_id),
        "seconds": round(time.perf_counter() - start, 2),
    }
    path = write_npz(
        root.band_powers_path(lmax, noise_level),
        {"band_powers": out, "edges": estimator.edges},
        record,
        tmp_root=root.tmp_root,
    )
    logger.info("%s: band powers of %d rows in %s", label, len(table), path)
    return BandPowersResult(path, out, estimator.edges, record)
