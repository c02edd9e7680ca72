"""Tests of :mod:`lensing_core.validation` and :mod:`lensing_core.plotting`."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from lensing_core.plotting import figure_to_png_bytes, spectra_figure
from lensing_core.sims.catalog import synthetic_catalog
from lensing_core.sims.sources import KappaNpzSource, SyntheticSource
from lensing_core.sims.synthetic import synthetic_kappa
from lensing_core.sky.harmonics import n_alm, synthesize_rings
from lensing_core.storage import DataRoot
from lensing_core.validation import (
    CHECK_NAMES,
    KappaValidation,
    band_edges,
    count_nonfinite,
    default_ell_range,
    judge_spectra,
    mean_over_std,
    measured_spectra,
    read_kappa_for_checks,
    std_increases_with_bin,
    std_per_bin,
    validate_kappa_maps,
)
from tests.fixtures.maps import FIDUCIAL_TEST_PARAMS

NSIDE = 64


@pytest.fixture(scope="module")
def maps() -> np.ndarray:
    """One nside-64 synthetic realisation of the fiducial cosmology (read-only)."""
    kappa = synthetic_kappa(FIDUCIAL_TEST_PARAMS, nside=NSIDE, rng=np.random.default_rng(109))
    kappa.setflags(write=False)
    return kappa


@pytest.fixture(scope="module")
def good(maps: np.ndarray, nz: tuple) -> KappaValidation:
    return validate_kappa_maps(maps, FIDUCIAL_TEST_PARAMS, nz)


def _passed(validation: KappaValidation) -> dict[str, bool]:
    return {name: outcome.passed for name, outcome in validation.outcomes.items()}


def test_synthetic_maps_pass_every_check(good: KappaValidation) -> None:
    """Lognormal maps drawn from the theory: every check passes, band ratios near one."""
    assert _passed(good) == dict.fromkeys(CHECK_NAMES, True)
    comparison = good.comparison
    assert (comparison.ell_min, comparison.ell_max) == (10, 32)
    assert len(comparison.pairs) == 10
    assert comparison.ratio.shape == (10, len(comparison.edges) - 1)
    assert np.all(np.abs(comparison.ratio - 1) < 0.3)
    assert np.all(np.abs(comparison.deviation_sigma) < 4)
    meta = good.outcomes["spectra_match_theory"].metadata
    assert meta["n_failed_bands"] == 0
    assert set(meta["auto_ratio_mean"]) == {"00", "11", "22", "33"}


def test_maps_scaled_by_1_2_fail_the_spectra_only(maps: np.ndarray, nz: tuple) -> None:
    """Amplitude 1.2 (power 1.44): the spectra fail; mean and variance order still pass."""
    validation = validate_kappa_maps(1.2 * maps, FIDUCIAL_TEST_PARAMS, nz)
    assert _passed(validation) == {
        "maps_finite": True,
        "mean_near_zero": True,
        "variance_increases_with_bin": True,
        "spectra_match_theory": False,
    }
    assert validation.verdict.max_abs_deviation == pytest.approx(0.44, abs=0.3)
    assert validation.verdict.n_failed > 0
    assert "outside" in validation.outcomes["spectra_match_theory"].summary


def test_nan_pixel_fails_finite_and_skips_spectra(maps: np.ndarray, nz: tuple) -> None:
    """One NaN: maps_finite counts it; the spectra are not compared; mean ignores it."""
    bad = maps.copy()
    bad[2, 17] = np.nan
    bad[3, 5] = np.inf
    assert count_nonfinite(bad).tolist() == [0, 0, 1, 1]
    validation = validate_kappa_maps(bad, FIDUCIAL_TEST_PARAMS, nz)
    finite = validation.outcomes["maps_finite"]
    assert not finite.passed
    assert finite.metadata["nonfinite_pixels"] == 2
    assert validation.comparison is None
    spectra = validation.outcomes["spectra_match_theory"]
    assert not spectra.passed
    assert "NaN or infinite" in spectra.summary
    assert validation.outcomes["mean_near_zero"].passed
    assert np.all(np.isfinite(std_per_bin(bad)))


def test_monopole_fails_mean_but_not_spectra(maps: np.ndarray, nz: tuple) -> None:
    """A constant of 0.2 std: mean_near_zero fails; ell >= 10 spectra do not see it."""
    std = std_per_bin(maps)
    shifted = maps + 0.2 * std[:, None]
    assert np.abs(mean_over_std(shifted)) == pytest.approx(0.2, abs=0.01)
    validation = validate_kappa_maps(shifted, FIDUCIAL_TEST_PARAMS, nz)
    assert not validation.outcomes["mean_near_zero"].passed
    assert validation.outcomes["spectra_match_theory"].passed
    assert np.all(np.abs(mean_over_std(maps)) < 0.01)


def test_reversed_bins_fail_variance_order(maps: np.ndarray, nz: tuple) -> None:
    """Bins in reverse order: the variance order fails, and so do the spectra."""
    validation = validate_kappa_maps(maps[::-1], FIDUCIAL_TEST_PARAMS, nz)
    assert not validation.outcomes["variance_increases_with_bin"].passed
    assert not validation.outcomes["spectra_match_theory"].passed
    assert std_increases_with_bin(np.array([1.0, 2.0, 3.0]))
    assert not std_increases_with_bin(np.array([1.0, 3.0, 3.0]))


@pytest.mark.parametrize("params", [{}, {**FIDUCIAL_TEST_PARAMS, "Omega_m": math.nan}])
def test_no_parameters_fails_spectra_saying_why(maps: np.ndarray, nz: tuple, params: dict) -> None:
    """kappa_npz maps without a parameter table: not compared, the check says why."""
    validation = validate_kappa_maps(maps, params, nz)
    spectra = validation.outcomes["spectra_match_theory"]
    assert not spectra.passed
    assert "no value for" in spectra.summary
    assert validation.outcomes["maps_finite"].passed


def test_too_coarse_maps_fail_spectra_saying_why(nz: tuple) -> None:
    """nside 16 leaves no ell range: the other checks still run."""
    tiny = synthetic_kappa(FIDUCIAL_TEST_PARAMS, nside=16, rng=np.random.default_rng(1))
    validation = validate_kappa_maps(tiny, FIDUCIAL_TEST_PARAMS, nz)
    assert "too coarse" in validation.outcomes["spectra_match_theory"].summary
    assert validation.outcomes["maps_finite"].passed


def test_cosmic_variance_of_a_band(good: KappaValidation) -> None:
    """sigma of a band power = sqrt(sum (C_ii C_jj + C_ij^2) / (2l + 1)) / N_ells."""
    comparison = good.comparison
    k = comparison.pairs.index((1, 3))
    lo, hi = comparison.edges[2], comparison.edges[3]
    c = comparison.theory_cls
    ell = np.arange(lo, hi)
    var = (c[1, 1, lo:hi] * c[3, 3, lo:hi] + c[1, 3, lo:hi] ** 2) / (2 * ell + 1)
    assert comparison.sigma[k, 2] == pytest.approx(np.sqrt(var.sum()) / ell.size, rel=1e-12)
    assert comparison.theory[k, 2] == pytest.approx(c[1, 3, lo:hi].mean(), rel=1e-12)
    assert comparison.ell_centres[2] == pytest.approx(ell.mean())


def test_measured_spectra_of_single_modes() -> None:
    """A map of one (l=20, m=0) and one (l=7, m=3) mode: C_l = sum_m |a_lm|^2 (1 or 2) / (2l+1)."""
    lmax = 40
    alm = np.zeros((2, n_alm(lmax)), dtype=np.complex128)
    alm[0, 20] = 3.0  # m = 0: index ell
    m, ell = 3, 7
    alm[1, m * (2 * lmax + 1 - m) // 2 + ell] = 1.0 + 2.0j
    maps = synthesize_rings(alm, 32)
    cls = measured_spectra(maps, lmax)
    assert cls.shape == (2, 2, lmax + 1)
    assert cls[0, 0, 20] == pytest.approx(9.0 / 41, rel=1e-6)
    assert cls[1, 1, 7] == pytest.approx(2 * 5.0 / 15, rel=1e-6)
    assert np.abs(cls[0, 0, np.arange(lmax + 1) != 20]).max() < 1e-8
    assert np.abs(cls[0, 1]).max() < 1e-8  # different modes do not correlate
    np.testing.assert_allclose(cls[0, 1], cls[1, 0])


def test_default_ell_range_and_bands() -> None:
    """ell from 10 to nside / 2, capped at 1000; bands cover the range with >= 100 modes."""
    assert default_ell_range(128) == (10, 64)
    assert default_ell_range(1024) == (10, 512)
    assert default_ell_range(4096) == (10, 1000)
    with pytest.raises(ValueError, match="too coarse"):
        default_ell_range(16)
    for ell_min, ell_max in [(10, 32), (10, 64), (10, 512), (10, 1000), (10, 12)]:
        edges = band_edges(ell_min, ell_max, 8)
        assert edges[0] == ell_min
        assert edges[-1] == ell_max + 1
        assert np.all(np.diff(edges) > 0)
        assert len(edges) <= 9
        if len(edges) > 2:
            assert np.all(edges[1:] ** 2 - edges[:-1] ** 2 >= 100)
    with pytest.raises(ValueError, match="ell_min"):
        band_edges(40, 20, 4)


def test_judge_spectra_rule(good: KappaValidation) -> None:
    """Tolerance = max(rel_tol, n_sigma * sigma): a tight rule fails the same maps."""
    verdict = judge_spectra(good.comparison)
    assert verdict.passed
    np.testing.assert_allclose(verdict.tolerance, np.maximum(0.1, 4 * good.comparison.ratio_sigma))
    assert not judge_spectra(good.comparison, rel_tol=0.0, n_sigma=0.1).passed


def test_theory_nz_prefers_the_source_nz(nz: tuple) -> None:
    """A source with its own n(z) gets it; the others get the DES-Y3-like stand-in."""
    own = (np.array([0.0, 1.0]), np.ones((4, 2)))

    class WithNz(SyntheticSource):
        def nz(self) -> tuple:
            return own

    catalog = synthetic_catalog(110)
    assert WithNz(catalog).nz() is own
    _z, n = SyntheticSource(catalog).nz()
    np.testing.assert_array_equal(n, nz[1])
    _z, n = KappaNpzSource(Path("."), catalog).nz()
    np.testing.assert_array_equal(n, nz[1])


def test_read_kappa_for_checks_keeps_nan(tmp_path: Path, maps: np.ndarray) -> None:
    """The checks' reader returns NaN pixels for counting instead of refusing the file."""
    root = DataRoot(tmp_path)
    bad = maps.copy()
    bad[1, 3] = np.nan
    root.write_kappa(7, bad, {"params": FIDUCIAL_TEST_PARAMS})
    read, meta = read_kappa_for_checks(root, 7)
    assert read.shape == (4, 12 * NSIDE**2)
    assert count_nonfinite(read).tolist() == [0, 1, 0, 0]
    assert meta["params"]["Omega_m"] == FIDUCIAL_TEST_PARAMS["Omega_m"]
    path = root.write_bytes(root.spectra_plot_path(7), b"\x89PNG fake")
    assert path == tmp_path / "reports" / "kappa_checks" / "sim00007_spectra.png"
    assert path.read_bytes() == b"\x89PNG fake"
    assert list((tmp_path / ".tmp").iterdir()) == []


def test_spectra_figure_and_png(good: KappaValidation) -> None:
    """A Figure with a spectrum and a ratio panel per pair; small PNG; pyplot untouched."""
    before = plt.get_fignums()
    fig = spectra_figure(good.comparison, good.verdict, title="sim 109")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 20
    assert fig.axes[0].get_xscale() == "log"
    assert fig.axes[0].get_yscale() == "log"
    png = figure_to_png_bytes(fig)
    assert png.startswith(b"\x89PNG")
    assert len(png) < 100_000
    assert figure_to_png_bytes(fig, colors=None).startswith(b"\x89PNG")
    assert plt.get_fignums() == before
