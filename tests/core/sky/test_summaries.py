"""Tests of :mod:`lensing_core.sky.summaries`: the figures shown in tile and kappa metadata."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lensing_core.sky.summaries import kappa_summary, scheme_summary, tile_summary


def test_kappa_summary(rng: np.random.Generator) -> None:
    """Shape, nside and per-bin mean and standard deviation, JSON-ready."""
    maps = rng.normal(loc=[[0.1], [-0.2]], scale=[[1.0], [3.0]], size=(2, 12 * 16**2))
    summary = kappa_summary(maps)
    assert summary["shape"] == [2, 3072]
    assert summary["nside"] == 16
    np.testing.assert_allclose(summary["mean_per_bin"], maps.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(summary["std_per_bin"], maps.std(axis=1), rtol=1e-5)
    json.dumps(summary)


@pytest.mark.parametrize(
    ("scheme", "duplicates", "min_cov", "max_cov", "max_overlap"),
    [("belts", 0, 0.90, 1.0, 0.03), ("legacy", 4, 0.45, 0.55, 1.0)],
)
def test_scheme_summary(
    scheme: str, duplicates: int, min_cov: float, max_cov: float, max_overlap: float
) -> None:
    """Coverage, largest overlap and the number of duplicated tile pairs of each scheme."""
    summary = scheme_summary(scheme)
    assert summary["scheme"] == scheme
    assert summary["duplicate_tile_pairs"] == duplicates
    assert min_cov <= summary["sky_coverage"] <= max_cov
    assert summary["max_pairwise_overlap"] <= max_overlap
    if duplicates:  # a duplicated tile overlaps its twin completely
        assert summary["max_pairwise_overlap"] == 1.0
    json.dumps(summary)


def test_tile_summary_noise_figures() -> None:
    """Band-limited noise std is ``sqrt(N (lmax+1)^2 / 4 pi)``, computed from survey numbers."""
    tiles = {
        "noiseless": np.zeros((12, 4, 8, 8), np.float32),
        "lsst_y10": np.ones((12, 4, 8, 8), np.float32),
    }
    summary = tile_summary(tiles, lmax=200, nside_in=1024, scheme="belts", convention="legacy")
    n_lsst = 0.26**2 / (6.75 * (180 * 60 / math.pi) ** 2) / 2  # legacy: half the power
    assert summary["band_limited_noise_std"]["noiseless"] == [0.0] * 4
    np.testing.assert_allclose(
        summary["band_limited_noise_std"]["lsst_y10"],
        [math.sqrt(n_lsst * 201**2 / (4 * math.pi))] * 4,
        rtol=1e-5,
    )
    area_arcmin2 = 4 * math.pi / (12 * 1024**2) * (180 * 60 / math.pi) ** 2
    np.testing.assert_allclose(
        summary["pixel_noise_std_at_source_nside"]["lsst_y10"],
        [0.26 / math.sqrt(2 * 6.75 * area_arcmin2)] * 4,
        rtol=1e-5,
    )
    assert summary["shapes"] == {"noiseless": [12, 4, 8, 8], "lsst_y10": [12, 4, 8, 8]}
    assert summary["std_per_bin"]["lsst_y10"] == [0.0] * 4
    assert summary["noise_convention"] == "legacy"
    assert summary["duplicate_tile_pairs"] == 0
    json.dumps(summary)
