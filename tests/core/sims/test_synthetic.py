"""Tests of :mod:`lensing_core.sims.synthetic`: correlated lognormal convergence maps."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import healpy as hp
import numpy as np
import pytest
from scipy.stats import skew

from lensing_core.sims.catalog import FIDUCIAL_PARAMS, GOWER_STREET_RANGES
from lensing_core.sims.synthetic import (
    DEFAULT_SHIFT,
    SHIFT_CHOICES,
    SYNTHETIC_RECIPE_VERSION,
    lognormal_shifts,
    synthetic_kappa,
)
from lensing_core.sims.theory import des_y3_like_nz, hilbert2011_shift, kappa_cls, kappa_empty_beam
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
    """Every shift recipe gives bounded maps."""
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
    """The recipe version is a non-empty string; 2 since the default shift depends on cosmology."""
    assert isinstance(SYNTHETIC_RECIPE_VERSION, str)
    assert SYNTHETIC_RECIPE_VERSION == "2"


@pytest.mark.parametrize(("nside", "lmax"), [(48, None), (32, 200), (32, 1)])
def test_bad_resolution_is_an_error(nside: int, lmax: int | None) -> None:
    """A non-power-of-two nside or an lmax the maps cannot hold is an error."""
    with pytest.raises(ValueError, match=r"nside|lmax"):
        synthetic_kappa(FIDUCIAL_TEST_PARAMS, nside=nside, lmax=lmax, rng=np.random.default_rng(0))


# ---- the default shift: the Hilbert calibration carried across cosmologies -------------------

OMEGA_M_LO, OMEGA_M_HI = GOWER_STREET_RANGES["Omega_m"]
SIGMA_8_LO, SIGMA_8_HI = GOWER_STREET_RANGES["sigma_8"]
S8_LO, S8_HI = GOWER_STREET_RANGES["S8"]


def _cosmology(omega_m: float, s8: float, **others: float) -> dict[str, float]:
    """The fiducial with Omega_m, S8 and *others* replaced (sigma_8 and Omega_b derived)."""
    params = {**FIDUCIAL_PARAMS, **others, "Omega_m": omega_m, "S8": s8}
    params["sigma_8"] = s8 / math.sqrt(omega_m / 0.3)
    params["Omega_b"] = params["Omega_bh2"] / params["h"] ** 2
    return params


def _s8_range(omega_m: float) -> tuple[float, float]:
    """The S8 prior at *omega_m*: 0.50-1.00 with sigma_8 inside the Gower Street range."""
    root = math.sqrt(omega_m / 0.3)
    return max(S8_LO, SIGMA_8_LO * root), min(S8_HI, SIGMA_8_HI * root)


def _prior_box_points() -> list[dict[str, float]]:
    """The (Omega_m, S8) corners of the prior, at the edges of w and h that matter most.

    A less negative w and a lower h shorten the distances and lower the empty-beam value,
    so (Omega_m low, w = -0.34, h = 0.61) is the binding case.
    """
    w_lo, w_hi = GOWER_STREET_RANGES["w"]
    h_lo, h_hi = GOWER_STREET_RANGES["h"]
    points = []
    for omega_m in (OMEGA_M_LO, OMEGA_M_HI):
        for s8 in _s8_range(omega_m):
            for w, h in ((w_hi, h_lo), (w_lo, h_hi)):
                points.append(_cosmology(omega_m, s8, w=w, h=h))
    return points


def _s3(kappa: np.ndarray) -> np.ndarray:
    """Reduced skewness <k^3> / <k^2>^2 of each bin's map, shape (n_bins,)."""
    x = kappa - kappa.mean(axis=1, keepdims=True)
    return np.mean(x**3, axis=1) / np.mean(x**2, axis=1) ** 2


def test_default_shift_is_the_scaled_hilbert_calibration() -> None:
    """Hilbert at the fiducial, times the empty-beam ratio elsewhere."""
    nz = des_y3_like_nz()
    assert DEFAULT_SHIFT == "hilbert2011_scaled" == SHIFT_CHOICES[0]
    np.testing.assert_allclose(lognormal_shifts(FIDUCIAL_PARAMS, nz), hilbert2011_shift(nz))
    other = _cosmology(0.2, 0.8)
    expected = (
        hilbert2011_shift(nz) * kappa_empty_beam(other, nz) / kappa_empty_beam(FIDUCIAL_PARAMS, nz)
    )
    np.testing.assert_allclose(lognormal_shifts(other, nz), expected, rtol=1e-12)


@pytest.mark.parametrize(
    "params",
    _prior_box_points(),
    ids=lambda p: f"Om{p['Omega_m']:.2f}-S8{p['S8']:.2f}-w{p['w']:.2f}-h{p['h']:.2f}",
)
def test_default_maps_stay_above_the_empty_beam_bound(params: Mapping[str, float]) -> None:
    """Across the prior box the default shift is below kappa_eb and so is every map's minimum."""
    nz = des_y3_like_nz()
    empty_beam = kappa_empty_beam(params, nz)
    shifts = lognormal_shifts(params, nz)
    assert np.all(shifts < 0.7 * empty_beam), shifts / empty_beam
    kappa = synthetic_kappa(params, nside=32, rng=np.random.default_rng(5))
    assert np.all(kappa.min(axis=1) >= -shifts)
    assert np.all(kappa.min(axis=1) > -empty_beam), kappa.min(axis=1) / empty_beam


def test_old_hilbert_shift_breaks_the_bound_at_low_omega_m() -> None:
    """Why the default changed: the cosmology-free Hilbert shift exceeds kappa_eb at Omega_m 0.15.

    Maps with that shift may reach kappa = -shift, below the physical minimum -kappa_eb.
    """
    nz = des_y3_like_nz()
    params = _cosmology(0.15, 0.8)
    empty_beam = kappa_empty_beam(params, nz)
    old = lognormal_shifts(params, nz, shift="hilbert2011")
    assert np.all(old[:2] > empty_beam[:2]), (old, empty_beam)
    assert np.all(lognormal_shifts(params, nz) < empty_beam)
    # at the low end of the prior (Omega_m 0.12, w -0.34) every bin breaks it
    low = _cosmology(OMEGA_M_LO, 0.7, w=GOWER_STREET_RANGES["w"][1])
    assert np.all(lognormal_shifts(low, nz, shift="hilbert2011") > kappa_empty_beam(low, nz))


def test_skewness_knows_omega_m() -> None:
    """At fixed S8 the default maps are more skewed at low Omega_m, like 1 / shift; the old ones are not.

    For a lognormal field S3 = (exp(s^2) + 2) / shift ~ 3 / shift: with the default the S3
    ratio follows the shift ratio (about 2 between Omega_m 0.2 and 0.45); with the
    cosmology-free Hilbert shift both the shifts and S3 barely move.
    """
    nz = des_y3_like_nz()
    low, high = _cosmology(0.2, 0.8), _cosmology(0.45, 0.8)
    old_low, old_high = (lognormal_shifts(p, nz, shift="hilbert2011") for p in (low, high))
    np.testing.assert_array_equal(old_low, old_high)
    shift_ratio = lognormal_shifts(high, nz) / lognormal_shifts(low, nz)
    assert np.all(shift_ratio > 1.7)
    s3 = {
        (shift, name): _s3(synthetic_kappa(p, nside=32, rng=np.random.default_rng(3), shift=shift))
        for shift in ("hilbert2011_scaled", "hilbert2011")
        for name, p in (("low", low), ("high", high))
    }
    new_ratio = s3["hilbert2011_scaled", "low"] / s3["hilbert2011_scaled", "high"]
    old_ratio = s3["hilbert2011", "low"] / s3["hilbert2011", "high"]
    np.testing.assert_allclose(new_ratio, shift_ratio, rtol=0.1)
    assert np.all(new_ratio > 1.5)
    np.testing.assert_allclose(old_ratio, 1.0, atol=0.15)
