"""Numbers a person wants to see about maps and tiles (for asset metadata).

Every summary is a small JSON-ready record of plain lists and rounded numbers, made to be
shown as the metadata of a kappa-map or tile materialization.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from lensing_core._types import FloatArray
from lensing_core.sky.healpix import nside_from_npix
from lensing_core.sky.noise import noise_power, pixel_noise_std
from lensing_core.sky.tiles import sky_coverage


def _rounded(values: FloatArray, digits: int = 6) -> list[float]:
    return [float(f"{v:.{digits}g}") for v in np.asarray(values, dtype=np.float64)]


def kappa_summary(maps: FloatArray) -> dict[str, Any]:
    """Shape, nside and per-bin mean and standard deviation of maps ``(n_bins, npix)``."""
    return {
        "shape": list(maps.shape),
        "nside": nside_from_npix(maps.shape[-1]),
        "mean_per_bin": _rounded(maps.mean(axis=1, dtype=np.float64)),
        "std_per_bin": _rounded(maps.std(axis=1, dtype=np.float64)),
    }


@lru_cache(maxsize=4)
def scheme_summary(scheme: str) -> dict[str, Any]:
    """Sky coverage and largest pairwise overlap of a scheme's 12 tiles."""
    coverage, overlap = sky_coverage(scheme)
    return {
        "scheme": scheme,
        "sky_coverage": round(coverage, 4),
        "max_pairwise_overlap": round(float(overlap.max()), 4),
        "duplicate_tile_pairs": int(np.sum(np.triu(overlap) > 0.999)),
    }


def tile_summary(
    tiles: dict[str, FloatArray], *, lmax: int, nside_in: int, scheme: str, convention: str
) -> dict[str, Any]:
    """
    Shapes, per-bin standard deviation and noise figures of the tiles of one (sim, lmax).

    Parameters
    ----------
    tiles
        ``{noise_level: (12, n_bins, n, n)}``.
    lmax
        Band limit of the tiles.
    nside_in
        nside of the source maps (the noise is white at this resolution).
    scheme, convention
        Orientation scheme and noise convention used.

    Returns
    -------
        JSON-ready record; ``band_limited_noise_std`` is the expected standard deviation
        of the noise in the tiles, ``sqrt(sum_{l <= lmax} (2l + 1) N_l / 4 pi)``.
    """
    n_modes = (lmax + 1) ** 2  # sum over l <= lmax of (2l + 1)
    return {
        "shapes": {level: list(t.shape) for level, t in tiles.items()},
        "std_per_bin": {
            level: _rounded(t.std(axis=(0, 2, 3), dtype=np.float64)) for level, t in tiles.items()
        },
        "pixel_noise_std_at_source_nside": {
            level: _rounded(pixel_noise_std(level, nside_in, convention=convention))
            for level in tiles
        },
        "band_limited_noise_std": {
            level: _rounded(
                np.sqrt(noise_power(level, convention=convention) * n_modes / (4 * np.pi))
            )
            for level in tiles
        },
        "noise_convention": convention,
        **scheme_summary(scheme),
    }
