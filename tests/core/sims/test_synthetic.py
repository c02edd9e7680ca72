"""Tests of :mod:`lensing_core.sims.synthetic`: correlated lognormal convergence maps."""

from __future__ import annotations

import itertools

import healpy as hp
import numpy as np
import pytest
from scipy.stats import skew

from lensing_core.sims.synthetic import (
    SHIFT_CHOICES,
    SYNTHETIC_RECIPE_VERSION,
    lognormal_shifts,
    synthetic_kappa,
)
from lensing_core.sims.theory import des_y3_like_nz, kappa_cls
from tests.fixtures.maps import FIDUCIAL_TEST_PARAMS

NSIDE = 64
# broad ell bins between 10 and 1.5 nside, where the maps (band limit 2 nside,
# no pixel window) follow the theory
ELL_EDGES = (10, 20, 35, 55, 75, 97)
N_REALISATIONS = 4


@pytest.fixture(scope="module")
def maps_and_theory() -> tuple[list[np.ndarray], np.ndarray]:
    """Return a few nside-64 realisations of the fiducial cosmology and their theory spectra."""
    maps = [
        synthetic_kappa(FIDUCIAL_TEST_PARAMS, nside=NSIDE, rng=np.random.default_rng(seed))
        for seed in range(N_REALISATIONS)
    ]
    return maps, kappa_cls(FIDUCIAL_TEST_PARAMS, des_y3_like_nz(), 2 * NSIDE)


def _measured_cls(kappa: np.ndarray, lmax: int) -> np.ndarray:
    """All auto and cross spectra of a map stack, shape (n_bins, n_bins, lmax + 1)."""
    alms = [hp.map2alm(m, lmax=lmax, iter=3) for m in kappa]
    n = len(alms)
    out = np.empty((n, n, lmax + 1))
    for i in range(n):
        for j in range(i + 1):
            out[i, j] = out[j, i] = hp.alm2cl(alms[i], alms[j])
    return out


def test_shape_dtype_and_ring_ordering(
    maps_and_theory: tuple[list[np.ndarray], np.ndarray],
) -> None:
    """Float64 maps (4, npix), finite, RING ordered."""
    kappa = maps_and_theory[0][0]
    assert kappa.shape == (4, hp.nside2npix(NSIDE))
    assert kappa.dtype == np.float64
    assert np.all(np.isfinite(kappa))
    # RING ordering: RING neighbours of a pixel are correlated with it (scales
    # above the pixel carry most of the variance); read as NESTED they are not
    ipix = np.arange(kappa.shape[1])
    neighbours = hp.get_all_neighbours(NSIDE, ipix)[0]  # east neighbour, RING indices
    for ordered, expected in ((kappa[3], "ring"), (hp.reorder(kappa[3], r2n=True), "nest")):
        x = ordered - ordered.mean()
        corr = np.mean(x * x[neighbours]) / x.var()
        assert (corr > 0.5) == (expected == "ring"), (expected, corr)


def test_same_seed_same_bytes_other_seed_other_maps() -> None:
    """Same seed, same bytes; another seed, other maps."""
    params = FIDUCIAL_TEST_PARAMS
    a = synthetic_kappa(params, nside=32, rng=np.random.default_rng(109))
    b = synthetic_kappa(params, nside=32, rng=np.random.default_rng(109))
    c = synthetic_kappa(params, nside=32, rng=np.random.default_rng(110))
    assert a.tobytes() == b.tobytes()
    assert not np.allclose(a, c)


def test_takes_its_randomness_from_rng_only(rng: np.random.Generator) -> None:
    """Resetting the generator state reproduces the maps."""
    state = rng.bit_generator.state
    a = synthetic_kappa(FIDUCIAL_TEST_PARAMS, nside=32, rng=rng)
    rng.bit_generator.state = state
    b = synthetic_kappa(FIDUCIAL_TEST_PARAMS, nside=32, rng=rng)
    assert a.tobytes() == b.tobytes()


def test_spectra_match_theory_within_cosmic_variance(
    maps_and_theory: tuple[list[np.ndarray], np.ndarray],
) -> None:
    """All 10 auto and cross spectra agree with the theory they were drawn from.

    Per broad ell bin, the Gaussian variance of the binned estimate is
    sum_l (C_ii C_jj + C_ij^2) / (2l + 1); every bin of every realisation must lie
    within 4 sigma, and the average over realisations, spectra and ell bins of
    measured / theory must be 1 within a few percent.
    """
    maps, theory = maps_and_theory
    lmax = ELL_EDGES[-1] - 1
    ratios = []
    for kappa in maps:
        measured = _measured_cls(kappa, lmax)
        for i in range(4):
            for j in range(i + 1):
                for lo, hi in itertools.pairwise(ELL_EDGES):
                    ell = np.arange(lo, hi)
                    c_ii, c_jj, c_ij = theory[i, i, ell], theory[j, j, ell], theory[i, j, ell]
                    sigma = np.sqrt(np.sum((c_ii * c_jj + c_ij**2) / (2 * ell + 1)))
                    diff = measured[i, j, ell].sum() - c_ij.sum()
                    assert abs(diff) < 4 * sigma, (i, j, lo, hi, diff / sigma)
                    ratios.append(measured[i, j, ell].sum() / c_ij.sum())
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.04)


def test_maps_are_lognormal(maps_and_theory: tuple[list[np.ndarray], np.ndarray]) -> None:
    """Maps stay above minus the shift, are right-skewed, and have ~zero mean."""
    shifts = lognormal_shifts(FIDUCIAL_TEST_PARAMS, des_y3_like_nz())
    for kappa in maps_and_theory[0]:
        assert np.all(kappa.min(axis=1) >= -shifts)
        assert np.all(skew(kappa, axis=1) > 0)
        # zero mean by construction, up to cosmic variance of the monopole-free field
        assert np.all(np.abs(kappa.mean(axis=1)) < 0.05 * kappa.std(axis=1))


@pytest.mark.parametrize("shift", SHIFT_CHOICES)
def test_shift_choices(shift: str) -> None:
    """Both shift recipes give bounded maps."""
    nz = des_y3_like_nz()
    shifts = lognormal_shifts(FIDUCIAL_TEST_PARAMS, nz, shift=shift)
    assert shifts.shape == (4,)
    kappa = synthetic_kappa(
        FIDUCIAL_TEST_PARAMS, nside=32, rng=np.random.default_rng(0), shift=shift
    )
    assert np.all(kappa.min(axis=1) >= -shifts)


def test_unknown_shift_is_an_error() -> None:
    """An unknown shift name is an error."""
    with pytest.raises(ValueError, match="unknown lognormal shift"):
        lognormal_shifts(FIDUCIAL_TEST_PARAMS, des_y3_like_nz(), shift="bogus")  # type: ignore[arg-type]


def test_recipe_version_is_a_string() -> None:
    """The recipe version is a non-empty string."""
    assert isinstance(SYNTHETIC_RECIPE_VERSION, str)
    assert SYNTHETIC_RECIPE_VERSION


@pytest.mark.parametrize(("nside", "lmax"), [(48, None), (32, 200), (32, 1)])
def test_bad_resolution_is_an_error(nside: int, lmax: int | None) -> None:
    """A non-power-of-two nside or an lmax the maps cannot hold is an error."""
    with pytest.raises(ValueError, match=r"nside|lmax"):
        synthetic_kappa(FIDUCIAL_TEST_PARAMS, nside=nside, lmax=lmax, rng=np.random.default_rng(0))
