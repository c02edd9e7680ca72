"""The band-power compressor: features, and an MLP that learns (Omega_m, S8) and stops on val."""

from __future__ import annotations

import numpy as np
import pytest

from lensing_core.inference.cl_compressor import cl_features, fit_cl_compressor
from lensing_core.sky.power import PAIRS

N_BANDS = 6


def _toy(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Band powers whose amplitude follows S8^2 and whose tilt follows Omega_m, 5% scatter."""
    theta = np.column_stack([rng.uniform(0.15, 0.45, n), rng.uniform(0.6, 1.0, n)])
    bands = np.arange(1, N_BANDS + 1) / N_BANDS
    bp = np.zeros((n, 10, N_BANDS))
    auto = np.empty((n, 4, N_BANDS))
    for i in range(4):
        shape = (theta[:, 1:] / 0.8) ** 2 * (theta[:, :1] / 0.3) ** (0.5 * bands * (1 + i / 4))
        auto[:, i] = 1e-8 * (i + 1) * shape * (1 + 0.05 * rng.standard_normal((n, N_BANDS)))
    for p, (i, j) in enumerate(PAIRS):
        bp[:, p] = auto[:, i] if i == j else 0.6 * np.sqrt(auto[:, i] * auto[:, j])
    return bp, theta


def test_features_are_log_autos_and_correlation_coefficients() -> None:
    bp, _ = _toy(3, np.random.default_rng(0))
    features = cl_features(bp).reshape(3, 10, N_BANDS)
    auto = [PAIRS.index((i, i)) for i in range(4)]
    np.testing.assert_allclose(features[:, :4], np.log(bp[:, auto]))
    np.testing.assert_allclose(features[:, 4:], 0.6)
    bp[1, auto[2], 3] = -1e-10
    with pytest.raises(ValueError, match="auto spectra <= 0"):
        cl_features(bp)


def test_mlp_learns_the_parameters_and_keeps_the_best_validation_epoch() -> None:
    rng = np.random.default_rng(1)
    bp, theta = _toy(460, rng)
    features = cl_features(bp)
    train, val, test = np.arange(300), np.arange(300, 360), np.arange(360, 460)
    fitted = fit_cl_compressor(features, theta, train, val, max_epochs=60, patience=10)
    pred = fitted.predict_theta(features[test])
    r2 = 1 - ((pred - theta[test]) ** 2).sum(0) / ((theta[test] - theta[test].mean(0)) ** 2).sum(0)
    assert r2[1] > 0.9, r2
    assert r2[0] > 0.5, r2
    val_mse = [h["val_mse"] for h in fitted.history]
    assert fitted.best_epoch == 1 + int(np.argmin(val_mse))
    # the kept weights are those of the best validation epoch
    kept = float(
        (
            (
                fitted.compress(features[val]).numpy()
                - (theta[val] - fitted.theta_mean) / fitted.theta_std
            )
            ** 2
        ).mean()
    )
    assert kept == pytest.approx(min(val_mse), rel=1e-4)
    again = fit_cl_compressor(features, theta, train, val, max_epochs=60, patience=10)
    np.testing.assert_array_equal(again.predict_theta(features[test]), pred)  # seeded
    with pytest.raises(ValueError, match="training and validation rows"):
        fit_cl_compressor(features, theta, train, [])
