"""Fisher forecast of band powers: an analytic case, the prior alone, more modes, bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from lensing_core.inference.fisher import (
    FACE_FSKY,
    FISHER_PARAMS,
    SpectraDerivatives,
    band_means,
    box_prior_sigma,
    fisher_matrix,
    fisher_report,
    fom,
    forecast,
    gaussian_covariance,
    modes_per_band,
    pair_data,
    spectra_derivatives,
)
from lensing_core.sims.catalog import (
    FIDUCIAL_PARAMS,
    FIDUCIAL_SIM_ID,
    SimCatalog,
    synthetic_catalog,
)
from lensing_core.sims.sources import SyntheticSource
from lensing_core.sims.theory import des_y3_like_nz
from lensing_core.sky.noise import noise_power
from lensing_core.sky.power import TilePowerEstimator
from lensing_core.sky.tiles import LMAX_TO_NSIDE
from lensing_core.storage import DataRoot

EDGES = np.linspace(10, 200, 11)


def _spectra(n_bins: int, lmax: int = 200) -> np.ndarray:
    """Positive-definite toy spectra ``(n_bins, n_bins, lmax + 1)``: correlated power laws."""
    ell = np.arange(lmax + 1)
    shape = 1e-8 * ((ell + 20) / 100.0) ** -1.5
    mix = np.array([[1.0 + 0.5 * min(i, j) for j in range(n_bins)] for i in range(n_bins)])
    return mix[:, :, None] * shape


def test_one_amplitude_has_the_analytic_fisher() -> None:
    """C_b = A S_b, one bin: F = sum_b N_b S_b^2 / (2 (A S_b + N)^2)."""
    amplitude, noise = 1.3, 2e-9
    shape = band_means(_spectra(1), EDGES)  # (1, 1, n_bands)
    n_modes = modes_per_band(EDGES, FACE_FSKY)
    cov = gaussian_covariance(amplitude * shape, [noise], n_modes)
    fisher = fisher_matrix(shape.reshape(1, -1), cov)
    s = shape.reshape(-1)
    expected = np.sum(n_modes * s**2 / (2 * (amplitude * s + noise) ** 2))
    assert fisher.shape == (1, 1)
    assert fisher[0, 0] == pytest.approx(expected, rel=1e-12)
    # modes: f_sky sum (2 ell + 1) over the integers of each band
    assert n_modes.sum() == pytest.approx(FACE_FSKY * sum(2 * ell + 1 for ell in range(10, 200)))


def test_prior_alone_gives_the_prior_fom() -> None:
    sigmas = [box_prior_sigma(0.12, 0.50), box_prior_sigma(0.50, 1.00), 0.1]
    assert fom(np.zeros((3, 3)), sigmas) == pytest.approx(12 / (0.38 * 0.50))
    assert fom(np.zeros((3, 3)), sigmas, marginalise=False) == pytest.approx(12 / (0.38 * 0.50))


def test_more_modes_never_lower_the_fom() -> None:
    """Adding bands, sky or tomographic pairs adds information: the FoM never drops."""
    rng = np.random.default_rng(3)
    cls = _spectra(4)
    noise = np.full(4, 3e-9)
    n_params = 5
    # derivatives: each parameter changes the spectra with its own bin mixing and ell tilt
    ell = np.arange(cls.shape[-1])
    tilt = np.log((ell + 20) / 100)
    derivs = []
    for _ in range(n_params):
        mix = rng.normal(0, 1, (4, 4))
        mix = (mix + mix.T)[:, :, None]
        derivs.append(band_means(cls * mix * (1 + rng.normal() * tilt), EDGES))
    derivs = np.stack(derivs)
    signal = band_means(cls, EDGES)
    sigmas = [box_prior_sigma(0.12, 0.50), box_prior_sigma(0.5, 1.0), 0.3, 0.1, 0.05]
    previous = 0.0
    for n_bands in range(1, len(EDGES)):
        keep = slice(0, n_bands)
        cov = gaussian_covariance(
            signal[..., keep], noise, modes_per_band(EDGES[: n_bands + 1], FACE_FSKY)
        )
        d = pair_data(derivs[..., keep])
        value = fom(fisher_matrix(d, cov), sigmas)
        assert value >= previous * (1 - 1e-12)
        previous = value
    # a larger sky: more modes per band, more information
    wide = gaussian_covariance(signal, noise, modes_per_band(EDGES, 2 * FACE_FSKY))
    narrow = gaussian_covariance(signal, noise, modes_per_band(EDGES, FACE_FSKY))
    d = pair_data(derivs)
    assert fom(fisher_matrix(d, wide), sigmas) > fom(fisher_matrix(d, narrow), sigmas)
    # fixing the other parameters gains information when they are degenerate with the two
    fisher = fisher_matrix(d, narrow)
    assert fom(fisher, sigmas, marginalise=False) > 1.01 * fom(fisher, sigmas)


def test_bad_input_is_named() -> None:
    cov = np.diag([1.0, -1.0])
    with pytest.raises(ValueError, match=r"lmax_200_des_y3: the band-power covariance is not"):
        fisher_matrix(np.ones((1, 2)), cov, what="lmax_200_des_y3")
    with pytest.raises(ValueError, match="singular"):
        fisher_matrix(np.array([[1.0, 0.0], [0.0, 0.0]]), np.eye(2))
    with pytest.raises(ValueError, match="holds no ell"):
        band_means(_spectra(1, lmax=100), EDGES)


def test_tomographic_covariance_is_knox() -> None:
    """4 bins: symmetric, positive definite, Var C^01 = (C^00 C^11 + C^01 C^01) / N, noise in."""
    from lensing_core.sky.power import PAIRS

    signal = band_means(_spectra(4), EDGES)
    noise = np.array([1e-9, 2e-9, 3e-9, 4e-9])
    n_modes = modes_per_band(EDGES, FACE_FSKY)
    cov = gaussian_covariance(signal, noise, n_modes)
    n_bands = len(n_modes)
    assert cov.shape == (10 * n_bands, 10 * n_bands)
    np.testing.assert_allclose(cov, cov.T)
    np.linalg.cholesky(cov)
    total = signal + np.diag(noise)[:, :, None]
    p01, p00, p11 = PAIRS.index((0, 1)), PAIRS.index((0, 0)), PAIRS.index((1, 1))
    b = 3
    var01 = cov[p01 * n_bands + b, p01 * n_bands + b]
    expected = (total[0, 0, b] * total[1, 1, b] + total[0, 1, b] ** 2) / n_modes[b]
    assert var01 == pytest.approx(expected)
    cov_00_11 = cov[p00 * n_bands + b, p11 * n_bands + b]
    assert cov_00_11 == pytest.approx(2 * total[0, 1, b] ** 2 / n_modes[b])
    assert cov[p00 * n_bands + b, p00 * n_bands + b + 1] == 0.0  # bands are independent


@pytest.fixture(scope="module")
def theory() -> SpectraDerivatives:
    """pyccl spectra of the stand-in n(z) and their derivatives, up to ell 300 (about 4 s)."""
    return spectra_derivatives(des_y3_like_nz(), 300)


def test_forecast_of_a_tile_orders_as_it_must(theory: SpectraDerivatives) -> None:
    """Prior < marginalised < fixed; less noise and more bands never lower the FoM.

    Measured (des_y3, lmax-200 bands of a 128-pixel tile): FoM 654 marginalised, 2300 with
    the other parameters fixed, 63.2 for the box prior alone.
    """
    edges = TilePowerEstimator(128, 200).edges
    step = edges[1] - edges[0]
    wider = np.concatenate([edges, edges[-1] + step * np.arange(1, 5)])  # up to about 270
    foms = {}
    for level in ("noiseless", "lsst_y10", "des_y3"):
        result = forecast(theory, noise_power(level), edges, what=f"lmax_200_{level}")
        assert result.fom_prior == pytest.approx(12 / (0.38 * 0.50))
        assert result.fom_prior < result.fom_marginalised <= result.fom_fixed
        # w, h, n_s, ... are degenerate with (Omega_m, S8): marginalising them costs a lot
        assert result.fom_fixed > 1.5 * result.fom_marginalised
        more = forecast(theory, noise_power(level), wider)
        assert more.fom_marginalised >= result.fom_marginalised
        foms[level] = result.fom_marginalised
        record = result.to_record()
        assert record["fom_fisher"] == result.fom_marginalised
        assert record["param_names"][:2] == ["Omega_m", "S8"]
    assert foms["noiseless"] > foms["lsst_y10"] > foms["des_y3"]


def test_a_parameter_the_spectra_ignore_is_named(theory: SpectraDerivatives) -> None:
    derivatives = theory.derivatives.copy()
    derivatives[2] = 0.0  # w leaves the spectra unchanged
    blind = dataclasses.replace(theory, derivatives=derivatives)
    edges = TilePowerEstimator(128, 200).edges
    with pytest.raises(ValueError, match=r"lmax_200_des_y3: the Fisher matrix is singular"):
        forecast(blind, noise_power("des_y3"), edges, what="lmax_200_des_y3")


def test_the_report_of_a_configuration(tmp_path: Path) -> None:
    """The forecast of the source's n(z) and fiducial sim, of the configuration's tile bands.

    A source whose sim 109 has another Omega_m than the suite's default fiducial: the report
    follows the source's catalog, its n(z) and the noise of the configuration.
    """
    entries = {sid: dict(params) for sid, params in synthetic_catalog(110).items()}
    entries[FIDUCIAL_SIM_ID]["Omega_m"] = 0.28
    catalog = SimCatalog(entries, name="moved fiducial")
    source = SyntheticSource(catalog, nside=64)
    root = DataRoot(tmp_path / "root")
    report = fisher_report(root, 200, "lsst_y10", source)
    record = json.loads(root.fisher_path(200, "lsst_y10").read_text())
    assert report.path == root.root / "models" / "fisher" / "lmax200_lsst_y10" / "fisher.json"
    assert record == json.loads(json.dumps(report.record))
    fiducial = {**FIDUCIAL_PARAMS, **catalog[FIDUCIAL_SIM_ID]}
    assert record["fiducial_values"][0] == 0.28
    edges = TilePowerEstimator(LMAX_TO_NSIDE[200], 200).edges
    theory = spectra_derivatives(source.nz(), int(np.ceil(edges[-1])), fiducial=fiducial)
    direct = forecast(theory, noise_power("lsst_y10"), edges)
    assert record["fom_fisher"] == pytest.approx(direct.fom_marginalised, rel=1e-12)
    assert record["fom_fisher_fixed"] == pytest.approx(direct.fom_fixed, rel=1e-12)
    assert record["edges"] == edges.tolist()
    # the apodised window keeps about 3/4 of the face's modes: a smaller FoM
    assert 0.6 < record["window_mode_fraction"] < 0.9
    assert record["fom_prior"] < record["fom_fisher_window"] < record["fom_fisher"]
    metadata = report.to_metadata()
    assert [row["parameter"] for row in metadata["parameters"].rows] == list(FISHER_PARAMS)
    sigma = {row["parameter"]: row["sigma"] for row in metadata["parameters"].rows}
    assert sigma["S8"] < sigma["Omega_m"] < box_prior_sigma(0.1, 0.5)
    with pytest.raises(ValueError, match=r"configuration lmax_200_des_y3: no tile band powers"):
        fisher_report(root, 200, "des_y3", source, n_bands=60)
    assert not root.fisher_path(200, "des_y3").exists()
