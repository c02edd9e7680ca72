"""Tests of :mod:`lensing_core.sky.noise`: survey shape noise in pixels and in harmonic space.

Expected values are computed here from the survey numbers of the specification
(DES Y3 per bin ``(n_eff [arcmin^-2], sigma_e)``; LSST Y10 6.75 arcmin^-2 per bin,
sigma_e 0.26), not taken from the module's tables.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lensing_core.sky.harmonics import alm_to_cl, n_alm, synthesize_rings, truncate_alm
from lensing_core.sky.noise import (
    NOISE_CONVENTIONS,
    NOISE_LEVELS,
    noise_power,
    noise_rng,
    pixel_noise_std,
    white_noise_alm,
)
from lensing_core.sky.tiles import extract_tiles

DES_Y3 = ((1.476, 0.243), (1.479, 0.262), (1.484, 0.259), (1.461, 0.301))
LSST_Y10 = ((6.75, 0.26),) * 4
SURVEY_BINS = {"des_y3": DES_Y3, "lsst_y10": LSST_Y10}
ARCMIN2_PER_SR = (180 * 60 / math.pi) ** 2


def _pixel_area_arcmin2(nside: int) -> float:
    """Area of one HEALPix pixel in square arcminutes (41253 deg^2 / npix)."""
    return 4 * math.pi / (12 * nside**2) * ARCMIN2_PER_SR


def test_noise_levels_and_conventions() -> None:
    """The public names of noise levels and conventions."""
    assert NOISE_LEVELS == ("noiseless", "des_y3", "lsst_y10")
    assert NOISE_CONVENTIONS == ("per_component", "legacy")


@pytest.mark.parametrize("nside", [64, 1024])
@pytest.mark.parametrize("level", ["des_y3", "lsst_y10"])
def test_pixel_noise_variance_is_sigma_e2_over_n_eff_area(level: str, nside: int) -> None:
    """Per-bin pixel variance is ``sigma_e^2 / (n_eff A_pix)``; the legacy one is half of it."""
    area = _pixel_area_arcmin2(nside)
    expected_var = np.array([s**2 / (n * area) for n, s in SURVEY_BINS[level]])
    std = pixel_noise_std(level, nside)
    assert std.shape == (4,)
    np.testing.assert_allclose(std**2, expected_var, rtol=1e-12)
    np.testing.assert_allclose(
        pixel_noise_std(level, nside, convention="per_component"), std, rtol=0
    )
    legacy = pixel_noise_std(level, nside, convention="legacy")
    np.testing.assert_allclose(legacy**2, expected_var / 2, rtol=1e-12)


@pytest.mark.parametrize(
    ("level", "nside", "first_bin_std"),
    [
        # a pixel is 41252.96 deg^2 / npix: 11.802567 arcmin^2 at nside 1024, 3021.4571 at 64
        ("des_y3", 1024, 0.243 / math.sqrt(1.476 * 11.802567)),
        ("lsst_y10", 1024, 0.26 / math.sqrt(6.75 * 11.802567)),
        ("des_y3", 64, 0.243 / math.sqrt(1.476 * 3021.4571)),
    ],
)
def test_pixel_noise_std_spot_values(level: str, nside: int, first_bin_std: float) -> None:
    """Spot values of bin 0 from the pixel area in square arcminutes, written out."""
    assert pixel_noise_std(level, nside)[0] == pytest.approx(first_bin_std, rel=1e-6)


@pytest.mark.parametrize("convention", ["per_component", "legacy"])
def test_noiseless_gives_zeros(convention: str) -> None:
    """No noise: zero power and zero pixel standard deviation in every bin."""
    np.testing.assert_array_equal(pixel_noise_std("noiseless", 64, convention=convention), 0.0)
    np.testing.assert_array_equal(noise_power("noiseless", convention=convention), np.zeros(4))


@pytest.mark.parametrize("level", ["des_y3", "lsst_y10"])
def test_noise_power_is_sigma_e2_over_n_eff_in_steradians(level: str) -> None:
    """``N_ell = sigma_e^2 / n_eff`` with n_eff per steradian; ``N_ell / A_pix`` is the variance."""
    expected = np.array([s**2 / (n * ARCMIN2_PER_SR) for n, s in SURVEY_BINS[level]])
    np.testing.assert_allclose(noise_power(level), expected, rtol=1e-12)
    np.testing.assert_allclose(noise_power(level, convention="legacy"), expected / 2, rtol=1e-12)
    nside = 256
    np.testing.assert_allclose(
        noise_power(level) / (4 * math.pi / (12 * nside**2)),
        pixel_noise_std(level, nside) ** 2,
        rtol=1e-12,
    )


@pytest.mark.parametrize("level", ["des_y3", "lsst_y10"])
def test_harmonic_noise_has_the_pixel_variance_of_its_band(level: str) -> None:
    """White alm at lmax = 3 nside - 1, synthesised at nside 32, have the expected pixel variance.

    The variance of a band-limited white field is ``sum_l (2l+1)/(4 pi) N = N (3 nside)^2 / 4 pi``.
    Each map has about (3 nside)^2 = 9216 degrees of freedom (1.5% error on its variance);
    16 maps are averaged (0.4%) and each bin of 4 maps is checked at 4%.
    """
    nside, n_real = 32, 4
    lmax = 3 * nside - 1
    power = noise_power(level)
    variances = []
    for i in range(n_real):
        alm = white_noise_alm(power, lmax, rng=np.random.default_rng([11, i]))
        assert alm.shape == (4, n_alm(lmax))
        maps = synthesize_rings(alm, nside)
        variances.append(maps.var(axis=1))
    measured = np.mean(variances, axis=0)
    expected = power * (lmax + 1) ** 2 / (4 * math.pi)
    assert expected == pytest.approx(power * (3 * nside) ** 2 / (4 * math.pi))
    np.testing.assert_allclose(measured, expected, rtol=0.04)
    assert np.mean(measured / expected) == pytest.approx(1.0, abs=0.02)


def test_harmonic_noise_spectrum_is_flat_at_n(rng: np.random.Generator) -> None:
    """The measured C_l is N in every broad ell band (4 sigma), for m = 0 and m > 0 alike."""
    lmax, n_real = 95, 6
    power = noise_power("des_y3")
    alms = np.stack([white_noise_alm(power, lmax, rng=rng) for _ in range(n_real)])
    cl = alm_to_cl(alms).mean(axis=0) / power[:, None]  # (4 bins, lmax + 1), expect 1
    ell = np.arange(lmax + 1)
    for lo, hi in ((2, 12), (12, 30), (30, 60), (60, 96)):
        band = slice(lo, hi)
        weights = 2 * ell[band] + 1
        ratio = (cl[:, band] * weights).sum(axis=1) / weights.sum()
        sigma = math.sqrt(2 / (weights.sum() * n_real))
        assert np.all(np.abs(ratio - 1) < 4 * sigma), (lo, hi, ratio, sigma)
    # the real m = 0 coefficients carry N, the complex m > 0 ones N/2 per real component
    m0 = alms[..., : lmax + 1]
    assert np.all(m0.imag == 0)
    mpos = alms[..., lmax + 1 :]
    for part, scale in ((m0.real, 1.0), (mpos.real, 0.5), (mpos.imag, 0.5)):
        ratio = (part**2).mean(axis=(0, 2)) / (scale * power)
        sigma = math.sqrt(2 / (part.shape[0] * part.shape[2]))
        assert np.all(np.abs(ratio - 1) < 4 * sigma), ratio


@pytest.mark.parametrize("level", ["des_y3", "lsst_y10"])
def test_draw_at_small_lmax_is_truncation_of_larger_draw(level: str) -> None:
    """Same seed: the lmax-20 draw is the lmax-50 draw truncated to 20, bit for bit."""
    power = noise_power(level)
    small = white_noise_alm(power, 20, rng=noise_rng(109, level))
    large = white_noise_alm(power, 50, rng=noise_rng(109, level))
    assert small.tobytes() == truncate_alm(large, 20).tobytes()
    assert not np.array_equal(large, np.zeros_like(large))


def test_zero_power_gives_zero_alm() -> None:
    """Zero noise power gives zero coefficients (the noiseless case)."""
    alm = white_noise_alm(noise_power("noiseless"), 10, rng=noise_rng(1, "noiseless"))
    np.testing.assert_array_equal(alm, 0)


def test_noise_rng_is_deterministic_and_distinct() -> None:
    """The generator depends only on (seed, level), and differs between seeds and levels."""

    def draws(seed: int, level: str) -> np.ndarray:
        return noise_rng(seed, level).standard_normal(8)

    np.testing.assert_array_equal(draws(109, "des_y3"), draws(109, "des_y3"))
    assert draws(109, "des_y3").tobytes() == draws(109, "des_y3").tobytes()
    others = [
        draws(110, "des_y3"),
        draws(109, "lsst_y10"),
        draws(109, "noiseless"),
        draws(1, "des_y3"),
    ]
    for other in others:
        assert not np.allclose(draws(109, "des_y3"), other)
    # seeds and levels are not confused: (1, lsst_y10) differs from (2, des_y3)
    assert not np.allclose(draws(1, "lsst_y10"), draws(2, "des_y3"))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: noise_power("euclid"), "unknown noise level 'euclid'"),
        (lambda: pixel_noise_std("DES_Y3", 64), "unknown noise level 'DES_Y3'"),
        (lambda: noise_rng(1, "lsst"), "unknown noise level 'lsst'"),
        (lambda: noise_power("des_y3", convention="half"), "unknown noise convention 'half'"),
        (
            lambda: pixel_noise_std("des_y3", 64, convention="per_galaxy"),
            "unknown noise convention 'per_galaxy'",
        ),
    ],
    ids=["power-level", "std-level", "rng-level", "power-convention", "std-convention"],
)
def test_unknown_level_or_convention_raises(call: object, match: str) -> None:
    """Unknown noise levels and conventions raise ``ValueError`` naming the bad value."""
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]


def test_tile_noise_has_band_limited_variance_and_legacy_is_half() -> None:
    """Noise in tiles of a zero map: variance ``N (lmax+1)^2 / 4 pi``; legacy is exactly 1/sqrt 2.

    The same seed draws the same normal deviates in both conventions, so the legacy noise is
    the per-component noise scaled by ``1/sqrt(2)``.
    """
    nside, lmax = 32, 40
    kappa = np.zeros((4, 12 * nside**2))
    kwargs = {"seed": 3, "nside_out": {lmax: 32}}
    full = extract_tiles(kappa, [lmax], ["lsst_y10"], **kwargs)[lmax, "lsst_y10"]
    legacy = extract_tiles(kappa, [lmax], ["lsst_y10"], noise_convention="legacy", **kwargs)[
        lmax, "lsst_y10"
    ]
    expected_var = noise_power("lsst_y10") * (lmax + 1) ** 2 / (4 * math.pi)
    measured = full.var(axis=(0, 2, 3), dtype=np.float64)
    # about (lmax + 1)^2 = 1681 degrees of freedom per bin: 3.4% per bin, 1.7% averaged
    np.testing.assert_allclose(measured, expected_var, rtol=0.15)
    assert np.mean(measured / expected_var) == pytest.approx(1.0, abs=0.08)
    np.testing.assert_allclose(
        legacy, full / math.sqrt(2), rtol=1e-5, atol=1e-6 * np.abs(full).max()
    )
