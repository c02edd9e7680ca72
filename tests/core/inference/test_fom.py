"""Figure of merit: exact values, physical units, calibration, the result record and the figure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from lensing_core.inference.fom import (
    FOM_RESULT_KEYS,
    coverage,
    fom_from_cov,
    fom_summary,
    mahalanobis_sq,
    physical_cov,
    prior_fom,
    read_fom_result,
    to_physical,
    write_fom_result,
)
from lensing_core.io import InputMissingError
from lensing_core.plotting.figures import figure_to_png_bytes
from lensing_core.plotting.fom import ellipse_axes, fom_figure

THETA_MEAN = np.array([0.3, 0.8])  # (Omega_m, S8)
THETA_STD = np.array([0.05, 0.04])


def _random_covs(rng: np.random.Generator, n: int, d: int = 2) -> np.ndarray:
    """``(n, d, d)`` random symmetric positive definite matrices."""
    m = rng.normal(size=(n, d, d))
    return m @ m.transpose(0, 2, 1) + 0.1 * np.eye(d)


def test_fom_of_a_known_covariance_is_exact() -> None:
    assert fom_from_cov(np.diag([0.01**2, 0.02**2])) == pytest.approx(5000.0, rel=1e-12)
    assert isinstance(fom_from_cov(np.eye(2)), float)
    # A correlation of rho shrinks the area by sqrt(1 - rho^2): FoM = 1 / (s1 s2 sqrt(1 - rho^2)).
    s1, s2, rho = 0.02, 0.03, 0.6
    cov = np.array([[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]])
    assert fom_from_cov(cov) == pytest.approx(1 / (s1 * s2 * np.sqrt(1 - rho**2)), rel=1e-12)


def test_fom_is_batched_over_leading_axes(rng: np.random.Generator) -> None:
    covs = _random_covs(rng, 12).reshape(3, 4, 2, 2)
    fom = fom_from_cov(covs)
    assert fom.shape == (3, 4)
    assert fom[1, 2] == pytest.approx(fom_from_cov(covs[1, 2]), rel=1e-12)


@pytest.mark.parametrize(
    ("cov", "match"),
    [
        (np.zeros((2, 3)), r"expected cov of shape \(\.\.\., d, d\), got \(2, 3\)"),
        (np.ones(2), r"got \(2,\)"),
        (np.array([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 2.0], [2.0, 1.0]]]), "index \\[1\\].*not pos"),
        (np.full((2, 2), np.nan), "not positive definite"),
    ],
)
def test_fom_rejects_what_is_not_a_covariance(cov: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fom_from_cov(cov)


def test_physical_fom_is_normalised_fom_over_prod_theta_std(rng: np.random.Generator) -> None:
    cov_norm = _random_covs(rng, 5)
    cov_phys = physical_cov(cov_norm, THETA_STD)
    np.testing.assert_allclose(
        fom_from_cov(cov_phys), fom_from_cov(cov_norm) / np.prod(THETA_STD), rtol=1e-12
    )
    # Diagonal: variances scale by std^2, the correlation is unchanged.
    np.testing.assert_allclose(
        np.diagonal(cov_phys, axis1=-2, axis2=-1),
        np.diagonal(cov_norm, axis1=-2, axis2=-1) * THETA_STD**2,
    )
    assert fom_from_cov(physical_cov(np.eye(2), [0.01, 0.02])) == pytest.approx(5000.0)
    with pytest.raises(ValueError, match=r"theta_std of shape \(2,\)"):
        physical_cov(cov_norm, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="positive"):
        physical_cov(cov_norm, [0.1, -0.2])


def test_to_physical_maps_mean_and_cov() -> None:
    mean, cov = to_physical([[1.0, -2.0]], [np.eye(2)], THETA_MEAN, THETA_STD)
    np.testing.assert_allclose(mean, [[0.35, 0.72]])
    np.testing.assert_allclose(cov, [np.diag(THETA_STD**2)])


def test_prior_fom_is_fom_of_sample_covariance(rng: np.random.Generator) -> None:
    theta = rng.normal(size=(200_000, 2)) * THETA_STD + THETA_MEAN
    assert prior_fom(theta) == pytest.approx(1 / np.prod(THETA_STD), rel=0.01)
    with pytest.raises(ValueError, match=r"\(n, d\) with n > d"):
        prior_fom(theta[:2])


def _posterior_rows(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(size=(n, 2)), _random_covs(rng, n)


def test_exact_gaussian_posterior_is_calibrated(rng: np.random.Generator) -> None:
    """Truths drawn from the predicted Gaussians fall inside the p-ellipse a fraction p."""
    mean, cov = _posterior_rows(rng, 20_000)
    truth = mean + np.einsum("nij,nj->ni", np.linalg.cholesky(cov), rng.normal(size=mean.shape))
    calib = coverage(mean, cov, truth)
    assert set(calib) == {0.68, 0.95}
    for level, fraction in calib.items():
        assert abs(fraction - level) < 0.05, (level, fraction)
    # d^2 of an exact posterior is chi^2 with 2 degrees of freedom: mean 2.
    assert mahalanobis_sq(mean, cov, truth).mean() == pytest.approx(2.0, rel=0.05)


def test_over_confident_posterior_under_covers(rng: np.random.Generator) -> None:
    """Claiming cov / 4 (errors halved) covers 1 - exp(-chi2_p / 8): 0.25 and 0.53."""
    mean, cov = _posterior_rows(rng, 20_000)
    truth = mean + np.einsum("nij,nj->ni", np.linalg.cholesky(cov), rng.normal(size=mean.shape))
    calib = coverage(mean, cov / 4, truth)
    assert calib[0.68] == pytest.approx(1 - np.exp(-2.2788 / 8), abs=0.03)
    assert calib[0.95] == pytest.approx(1 - np.exp(-5.9915 / 8), abs=0.03)
    assert calib[0.68] < 0.68 - 0.3
    assert calib[0.95] < 0.95 - 0.3


def test_coverage_shape_and_level_errors() -> None:
    with pytest.raises(ValueError, match=r"got \(3, 2\), \(3, 2, 2\) and \(4, 2\)"):
        coverage(np.zeros((3, 2)), np.tile(np.eye(2), (3, 1, 1)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"levels must lie in \(0, 1\)"):
        coverage(np.zeros((3, 2)), np.tile(np.eye(2), (3, 1, 1)), np.zeros((3, 2)), levels=(68,))


def _summary(rng: np.random.Generator, n_test: int = 500) -> dict:
    fid_cov = np.tile(np.diag([0.04, 0.01]), (12, 1, 1)) * rng.uniform(0.9, 1.1, size=(12, 1, 1))
    test_mean, test_cov = _posterior_rows(rng, n_test)
    chol = np.linalg.cholesky(test_cov)
    test_theta = test_mean + np.einsum("nij,nj->ni", chol, rng.normal(size=test_mean.shape))
    return fom_summary(
        lmax=200,
        noise_level="des_y3",
        fiducial_cov=fid_cov,
        test_mean=test_mean,
        test_cov=test_cov,
        test_theta=test_theta,
        train_theta=rng.normal(size=(5000, 2)),
        theta_std=THETA_STD,
        compressor_checkpoint=Path("models/compressor/lmax200_des_y3/best.ckpt"),
    )


def test_fom_summary_holds_every_field_of_the_spec(rng: np.random.Generator) -> None:
    record = _summary(rng)
    assert set(record) == set(FOM_RESULT_KEYS)
    assert record["params"] == ["Omega_m", "S8"]
    assert len(record["fom_fiducial_all"]) == 12
    # fiducial covariances ~ diag(0.2^2, 0.1^2) normalised -> FoM_norm ~ 50, / prod(std) = 500.
    expected = 50 / np.prod(THETA_STD)
    assert record["fom_fiducial_median"] == pytest.approx(expected, rel=0.1)
    assert record["fom_fiducial_std"] == pytest.approx(
        np.std(record["fom_fiducial_all"], ddof=1), rel=1e-12
    )
    assert record["fom_test_lo_16"] < record["fom_test_median"] < record["fom_test_hi_84"]
    assert record["fom_prior"] == pytest.approx(1 / np.prod(THETA_STD), rel=0.05)
    calib = record["calibration"]
    assert set(calib) == {"coverage_68", "coverage_95", "n_test"}
    assert calib["n_test"] == 500
    assert abs(calib["coverage_68"] - 0.68) < 0.07
    assert record["compressor_checkpoint"] == "models/compressor/lmax200_des_y3/best.ckpt"
    json.dumps(record, allow_nan=False)  # JSON-ready as it is


def test_fom_result_round_trip_and_errors(tmp_path: Path, rng: np.random.Generator) -> None:
    record = _summary(rng, n_test=50)
    path = tmp_path / "models" / "npe" / "lmax200_des_y3" / "fom_result.json"
    assert write_fom_result(path, record, tmp_root=tmp_path / ".tmp") == path
    assert read_fom_result(path) == record
    assert list(tmp_path.rglob("*.partial")) == []

    bad = tmp_path / "bad.json"
    with pytest.raises(ValueError, match="not JSON-ready"):
        write_fom_result(bad, {**record, "fom_test_median": float("nan")}, tmp_root=tmp_path)
    assert not bad.exists()
    assert list(tmp_path.rglob("*.partial")) == []

    with pytest.raises(InputMissingError, match=str(bad)):
        read_fom_result(bad)
    bad.write_text(path.read_text()[:40])
    with pytest.raises(ValueError, match=rf"{bad} is truncated or corrupt"):
        read_fom_result(bad)
    bad.write_text(json.dumps({"lmax": 200}))
    with pytest.raises(ValueError, match=rf"{bad} lacks \['noise_level'"):
        read_fom_result(bad)


def test_ellipse_axes_of_a_rotated_covariance() -> None:
    """Major axis along (1, 1) at 45 degrees; widths 2 sqrt(chi2_p lambda)."""
    cov = np.array([[2.5, 1.5], [1.5, 2.5]])  # eigenvalues 4 (along (1, 1)) and 1
    width, height, angle = ellipse_axes(cov, 0.68)
    assert width == pytest.approx(2 * np.sqrt(2.2788 * 4), rel=1e-4)
    assert height == pytest.approx(2 * np.sqrt(2.2788 * 1), rel=1e-4)
    assert angle % 180 == pytest.approx(45.0)


def test_fom_figure_has_two_axes_and_renders(rng: np.random.Generator) -> None:
    truth = THETA_MEAN
    covs = physical_cov(np.tile(np.diag([0.04, 0.01]), (12, 1, 1)), THETA_STD)
    means = truth + rng.normal(size=(12, 2)) * 0.2 * THETA_STD
    foms = rng.lognormal(np.log(500), 0.2, size=300)
    fig = fom_figure(
        means,
        covs,
        truth,
        foms,
        fiducial_fom=fom_from_cov(covs),
        title="lmax 200, DES Y3: coverage 0.67 / 0.94",
        fom_prior=500.0,
    )
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    left, _ = fig.axes
    assert len(left.patches) == 24  # 12 tiles x 2 levels
    x0, x1 = left.get_xlim()
    assert x0 < truth[0] < x1
    png = figure_to_png_bytes(fig)
    assert png.startswith(b"\x89PNG")
    with pytest.raises(
        ValueError, match=r"fiducial_covs \(n, 2, 2\), got \(12, 2\) and \(11, 2, 2\)"
    ):
        fom_figure(means, covs[:11], truth, foms, fiducial_fom=fom_from_cov(covs[:11]))
