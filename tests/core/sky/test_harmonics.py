"""Tests of :mod:`lensing_core.sky.harmonics` against healpy, the reference implementation."""

from __future__ import annotations

import healpy as hp
import numpy as np
import pytest

from lensing_core.sky.harmonics import (
    alm_to_cl,
    lmax_of,
    map2alm,
    n_alm,
    synthesize_rings,
    truncate_alm,
)

NSIDE = 16


def _random_maps(rng: np.random.Generator, n_maps: int, nside: int = NSIDE) -> np.ndarray:
    """White-noise maps with an offset: power at every ell up to the pixel scale."""
    return rng.standard_normal((n_maps, 12 * nside**2)) + 0.5


def _random_alm(rng: np.random.Generator, n_maps: int, lmax: int) -> np.ndarray:
    """Complex Gaussian alm with real m = 0 coefficients."""
    alm = rng.standard_normal((n_maps, n_alm(lmax))) + 1j * rng.standard_normal(
        (n_maps, n_alm(lmax))
    )
    alm[:, : lmax + 1] = alm[:, : lmax + 1].real
    return alm


@pytest.mark.parametrize("n_iter", [0, 3])
@pytest.mark.parametrize("lmax", [10, 2 * NSIDE, 3 * NSIDE - 1])
def test_map2alm_matches_healpy(rng: np.random.Generator, n_iter: int, lmax: int) -> None:
    """``map2alm`` equals ``healpy.map2alm(use_weights=False, iter=n_iter)`` map by map."""
    maps = _random_maps(rng, 3)
    alm = map2alm(maps, lmax, n_iter=n_iter, nthreads=1)
    assert alm.shape == (3, n_alm(lmax))
    assert alm.dtype == np.complex128
    for m, a in zip(maps, alm, strict=True):
        expected = hp.map2alm(m, lmax=lmax, iter=n_iter, use_weights=False)
        np.testing.assert_allclose(a, expected, rtol=0, atol=1e-10 * np.abs(expected).max())


def test_map2alm_iterations_converge_on_band_limited_map(rng: np.random.Generator) -> None:
    """A map band-limited below the analysis lmax is recovered better with more iterations."""
    lmax = 20
    alm = _random_alm(rng, 1, lmax)
    maps = synthesize_rings(alm, NSIDE)
    err = [np.abs(map2alm(maps, lmax, n_iter=n) - alm).max() for n in (0, 3, 10)]
    assert err[0] > 1e-4 * np.abs(alm).max()  # the plain quadrature is not exact ...
    assert err[1] < err[0] / 100
    assert err[2] < 1e-12 * np.abs(alm).max()  # ... the iterated analysis is


@pytest.mark.parametrize("lmax", [0, 5, 2 * NSIDE, 3 * NSIDE - 1])
def test_synthesize_rings_full_sky_matches_alm2map(rng: np.random.Generator, lmax: int) -> None:
    """Synthesis on all rings equals ``healpy.alm2map`` (no pixel window)."""
    alm = _random_alm(rng, 2, lmax)
    maps = synthesize_rings(alm, NSIDE, nthreads=1)
    assert maps.shape == (2, 12 * NSIDE**2)
    for a, m in zip(alm, maps, strict=True):
        expected = hp.alm2map(a, NSIDE, lmax=lmax)
        np.testing.assert_allclose(m, expected, rtol=0, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("rings", [(0, 0), (3, 17), (NSIDE - 1, 3 * NSIDE - 1), (40, 62)])
def test_synthesize_rings_subset_is_a_slice_of_full_sky(
    rng: np.random.Generator, rings: tuple[int, int]
) -> None:
    """Synthesis on rings ``(first, last)`` equals the RING pixels of those rings."""
    alm = _random_alm(rng, 2, 2 * NSIDE)
    full = synthesize_rings(alm, NSIDE)
    part = synthesize_rings(alm, NSIDE, rings=rings)
    # healpy numbers rings from 1: (start pixel, pixels) of the first and last ring
    start, n_pix, *_ = hp.ringinfo(NSIDE, np.array(rings) + 1)
    selected = np.arange(start[0], start[1] + n_pix[1])
    assert part.shape == (2, selected.size)
    np.testing.assert_allclose(part, full[:, selected], rtol=0, atol=1e-12)


@pytest.mark.parametrize(("lmax_in", "lmax_out"), [(10, 0), (10, 4), (30, 17), (12, 12)])
def test_truncate_alm_selects_healpy_indices(
    rng: np.random.Generator, lmax_in: int, lmax_out: int
) -> None:
    """``truncate_alm`` picks ``a_lm`` at ``Alm.getidx(lmax_in, l, m)`` for ``l <= lmax_out``."""
    alm = _random_alm(rng, 2, lmax_in)
    out = truncate_alm(alm, lmax_out)
    assert out.shape == (2, n_alm(lmax_out))
    ell, m = hp.Alm.getlm(lmax_out)
    expected = alm[:, hp.Alm.getidx(lmax_in, ell, m)]
    np.testing.assert_array_equal(out, expected)
    # a new array, not a view of the input
    out[...] = 0
    assert np.any(alm != 0)


def test_truncate_alm_rejects_larger_lmax(rng: np.random.Generator) -> None:
    """Truncating to a larger band limit is an error that names both lmax values."""
    with pytest.raises(ValueError, match="lmax 10 to the larger lmax 11"):
        truncate_alm(_random_alm(rng, 1, 10), 11)


@pytest.mark.parametrize("lmax", [0, 3, 2 * NSIDE])
def test_alm_to_cl_matches_healpy(rng: np.random.Generator, lmax: int) -> None:
    """Auto and cross spectra equal ``healpy.alm2cl``."""
    alm = _random_alm(rng, 2, lmax)
    np.testing.assert_allclose(alm_to_cl(alm[0]), hp.alm2cl(alm[0]), rtol=1e-12)
    np.testing.assert_allclose(
        alm_to_cl(alm[0], alm[1]), hp.alm2cl(alm[0], alm[1]), rtol=1e-12, atol=1e-14
    )
    batched = alm_to_cl(alm)
    assert batched.shape == (2, lmax + 1)
    for a, cl in zip(alm, batched, strict=True):
        np.testing.assert_allclose(cl, hp.alm2cl(a), rtol=1e-12)


def test_alm_to_cl_of_single_mode_is_analytic() -> None:
    """One ``a_{l,m}`` (m > 0) of modulus 1 gives ``C_l = 2 / (2l + 1)``, other ell zero."""
    lmax = 6
    alm = np.zeros(n_alm(lmax), dtype=np.complex128)
    alm[hp.Alm.getidx(lmax, 4, 2)] = np.exp(0.3j)
    expected = np.zeros(lmax + 1)
    expected[4] = 2 / 9
    np.testing.assert_allclose(alm_to_cl(alm), expected, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize(("lmax", "nalm"), [(0, 1), (1, 3), (2, 6), (10, 66), (95, 4656)])
def test_n_alm_and_lmax_of_round_trip(lmax: int, nalm: int) -> None:
    """``n_alm`` counts ``(l+1)(l+2)/2`` coefficients and ``lmax_of`` inverts it."""
    assert n_alm(lmax) == nalm == hp.Alm.getsize(lmax)
    assert lmax_of(nalm) == lmax


@pytest.mark.parametrize("nalm", [2, 4, 5, 7, 65, 67])
def test_lmax_of_rejects_incomplete_alm(nalm: int) -> None:
    """A size that is not a triangular number ``(l+1)(l+2)/2`` raises ``ValueError``."""
    with pytest.raises(ValueError, match=f"{nalm} coefficients is not a complete alm array"):
        lmax_of(nalm)
