"""Tests of :mod:`lensing_core.sims.sobol`: the numpy sampler gives scipy's points, bit for bit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import qmc

from lensing_core.sims.sobol import SOBOL_MAX_DIM, scrambled_sobol


def _scipy_points(n: int, d: int, seed: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # n not a power of 2: balance, not values
        return qmc.Sobol(d=d, scramble=True, rng=np.random.default_rng(seed)).random(n)


@pytest.mark.parametrize("d", range(1, SOBOL_MAX_DIM + 1))
@pytest.mark.parametrize("seed", [0, 20221])
@pytest.mark.parametrize("n", [1, 2, 7, 1024, 4096])
def test_points_equal_scipys_scrambled_sobol(d: int, seed: int, n: int) -> None:
    """Same float64 values as ``qmc.Sobol(d, rng=default_rng(seed)).random(n)``."""
    expected = _scipy_points(n, d, seed)
    # scipy draws from a child it spawns from the generator it is given
    points = scrambled_sobol(n, d, rng=np.random.default_rng(seed).spawn(1)[0])
    assert points.dtype == np.float64
    assert points.shape == (n, d)
    np.testing.assert_array_equal(points, expected)


def test_points_are_a_digital_net() -> None:
    """2**m points put exactly one point in each of the 2**m intervals of every coordinate."""
    points = scrambled_sobol(256, 3, rng=np.random.default_rng(1))
    assert ((points >= 0) & (points < 1)).all()
    for coordinate in points.T:
        assert np.array_equal(np.sort(np.floor(coordinate * 256)), np.arange(256))


def test_no_points() -> None:
    """n = 0 gives an empty ``(0, d)`` array."""
    assert scrambled_sobol(0, 4, rng=np.random.default_rng(0)).shape == (0, 4)


@pytest.mark.parametrize(
    ("n", "d", "match"),
    [
        (4, 0, "dimensions must be in"),
        (4, SOBOL_MAX_DIM + 1, "dimensions must be in"),
        (-1, 2, "must be in \\[0, 2\\*\\*30\\]"),
        ((1 << 30) + 1, 2, "must be in \\[0, 2\\*\\*30\\]"),
    ],
)
def test_bad_sizes_are_refused(n: int, d: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        scrambled_sobol(n, d, rng=np.random.default_rng(0))
