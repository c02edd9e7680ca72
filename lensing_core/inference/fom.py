"""Figure of merit of a Gaussian posterior, its calibration, and the ``fom_result.json`` record.

Units: a posterior from :class:`~lensing_core.inference.npe.GaussianNPE` is over normalised
parameters ``theta_norm = (theta - theta_mean) / theta_std``; the reported FoM is in physical
units of (Omega_m, S8), ``FoM_physical = FoM_norm / prod(theta_std)``.

The FoM of a covariance is ``1 / sqrt(det Cov)``; its baseline is the FoM of the prior, that
of the sample covariance of the training parameters. Calibration is the fraction of test
tiles whose true parameters fall inside the predicted 68% and 95% credible ellipses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from lensing_core._types import FloatArray
from lensing_core.io import read_record, write_json
from lensing_core.sims.catalog import PARAM_NAMES

#: Credible levels whose ellipse coverage the report records (``coverage_68``, ``coverage_95``).
CALIBRATION_LEVELS: tuple[float, ...] = (0.68, 0.95)

#: Keys every ``fom_result.json`` holds: the FoMs, calibration and provenance of the report.
FOM_RESULT_KEYS: tuple[str, ...] = (
    "lmax",
    "noise_level",
    "params",
    "fom_fiducial_median",
    "fom_fiducial_std",
    "fom_fiducial_all",
    "fom_test_median",
    "fom_test_lo_16",
    "fom_test_hi_84",
    "fom_prior",
    "compressor_checkpoint",
    "calibration",
)


def _as_covs(cov: Any, what: str = "cov") -> FloatArray:
    cov = np.asarray(cov, dtype=np.float64)
    if cov.ndim < 2 or cov.shape[-1] != cov.shape[-2]:
        msg = f"expected {what} of shape (..., d, d), got {cov.shape}"
        raise ValueError(msg)
    return cov


def fom_from_cov(cov: Any) -> float | FloatArray:
    r"""
    Figure of merit :math:`1/\sqrt{\det C}` of one covariance or a stack of them.

    Parameters
    ----------
    cov
        Covariance, shape ``(..., d, d)`` (``d = 2`` for (Omega_m, S8)).

    Returns
    -------
        A float for a single ``(d, d)`` matrix, else an array of shape ``(...)``. In the units
        of the covariance: physical if *cov* is (see :func:`physical_cov`).

    Raises
    ------
    ValueError
        If *cov* is not square in its last two axes, or a determinant is not positive and
        finite (not a covariance).

    Examples
    --------
    >>> round(fom_from_cov(np.diag([0.01**2, 0.02**2])), 6)
    5000.0
    """
    cov = _as_covs(cov)
    if not np.all(np.isfinite(cov)):
        first = np.argwhere(~np.isfinite(cov))[0, :-2].tolist()
        msg = f"covariance at index {first} holds non-finite values: not positive definite"
        raise ValueError(msg)
    det = np.linalg.det(cov)
    bad = ~(np.isfinite(det) & (det > 0))
    if np.any(bad):
        first = np.argwhere(np.atleast_1d(bad))[0].tolist()
        msg = (
            f"covariance at index {first} has determinant "
            f"{np.atleast_1d(det)[tuple(first)]!r}: not positive definite"
        )
        raise ValueError(msg)
    fom = 1.0 / np.sqrt(det)
    return float(fom) if cov.ndim == 2 else fom


def _as_std(theta_std: Any, d: int) -> FloatArray:
    std = np.asarray(theta_std, dtype=np.float64)
    if std.shape != (d,) or not np.all(std > 0):
        msg = f"expected theta_std of shape ({d},) with positive entries, got {std.tolist()}"
        raise ValueError(msg)
    return std


def physical_cov(cov_norm: Any, theta_std: Any) -> FloatArray:
    r"""
    Covariance of physical parameters from that of normalised ones, :math:`D C D`.

    Parameters
    ----------
    cov_norm
        ``(..., d, d)``, units of ``theta_norm = (theta - theta_mean) / theta_std``.
    theta_std
        ``(d,)``, physical standard deviations of the parameters (the normalisation's).

    Returns
    -------
        ``(..., d, d)`` with :math:`D = \mathrm{diag}(\theta_\mathrm{std})`, so that
        ``fom_from_cov(physical_cov(c, s)) == fom_from_cov(c) / prod(s)``.
    """
    cov_norm = _as_covs(cov_norm, "cov_norm")
    std = _as_std(theta_std, cov_norm.shape[-1])
    return cov_norm * std[:, None] * std[None, :]


def to_physical(
    mean_norm: Any, cov_norm: Any, theta_mean: Any, theta_std: Any
) -> tuple[FloatArray, FloatArray]:
    """
    Posterior mean and covariance in physical units.

    Parameters
    ----------
    mean_norm, cov_norm
        ``(..., d)`` and ``(..., d, d)`` in normalised units.
    theta_mean, theta_std
        ``(d,)`` each: the normalisation of the parameters.

    Returns
    -------
        ``theta_mean + theta_std * mean_norm`` and :func:`physical_cov` of *cov_norm*.
    """
    mean_norm = np.asarray(mean_norm, dtype=np.float64)
    cov = physical_cov(cov_norm, theta_std)
    std = _as_std(theta_std, cov.shape[-1])
    theta_mean = np.asarray(theta_mean, dtype=np.float64)
    if mean_norm.shape != cov.shape[:-1] or theta_mean.shape != std.shape:
        msg = (
            f"expected mean (..., d) matching cov (..., d, d) and theta_mean (d,), got "
            f"{mean_norm.shape}, {cov.shape} and {theta_mean.shape}"
        )
        raise ValueError(msg)
    return theta_mean + std * mean_norm, cov


def prior_fom(theta: Any) -> float:
    """
    FoM of the sample covariance of parameter rows: the baseline a posterior must beat.

    Parameters
    ----------
    theta
        ``(n, d)`` parameters (e.g. of the training tiles, physical units for a physical FoM).

    Returns
    -------
        ``fom_from_cov(np.cov(theta, rowvar=False))``.
    """
    theta = np.asarray(theta, dtype=np.float64)
    if theta.ndim != 2 or theta.shape[0] <= theta.shape[1]:
        msg = f"expected theta of shape (n, d) with n > d, got {theta.shape}"
        raise ValueError(msg)
    return float(fom_from_cov(np.cov(theta, rowvar=False)))


def mahalanobis_sq(mean: Any, cov: Any, theta: Any) -> FloatArray:
    r"""
    Squared Mahalanobis distance :math:`(\theta-\mu)^T C^{-1} (\theta-\mu)` per row.

    Parameters
    ----------
    mean, cov, theta
        ``(n, d)``, ``(n, d, d)``, ``(n, d)`` in one set of units (the distance is invariant
        under the normalisation, so normalised units serve).

    Returns
    -------
        ``(n,)``.
    """
    mean = np.asarray(mean, dtype=np.float64)
    theta = np.asarray(theta, dtype=np.float64)
    cov = _as_covs(cov)
    if mean.ndim != 2 or theta.shape != mean.shape or cov.shape != (*mean.shape, mean.shape[1]):
        msg = (
            f"expected mean (n, d), cov (n, d, d) and theta (n, d) of one n and d, got "
            f"{mean.shape}, {cov.shape} and {theta.shape}"
        )
        raise ValueError(msg)
    diff = theta - mean
    return np.einsum("ni,ni->n", diff, np.linalg.solve(cov, diff[..., None])[..., 0])


def coverage(
    mean: Any, cov: Any, theta_true: Any, levels: Sequence[float] = CALIBRATION_LEVELS
) -> dict[float, float]:
    r"""
    Fraction of rows whose true parameters fall inside the predicted credible ellipse.

    Parameters
    ----------
    mean, cov, theta_true
        ``(n, d)``, ``(n, d, d)``, ``(n, d)``: one Gaussian posterior and the truth per row.
    levels
        Credible levels in ``(0, 1)``.

    Returns
    -------
        ``{level: fraction}``; a calibrated posterior gives ``fraction ~ level``, an
        over-confident one less.

    Notes
    -----
    Row *i* is inside the ellipse of level *p* when
    :math:`d_i^2 \le \chi^2_{d}{}^{-1}(p)`, :math:`d_i^2` the squared Mahalanobis distance
    (:func:`mahalanobis_sq`); for ``d = 2`` the 68% ellipse is :math:`d^2 \le 2.279`.
    """
    d2 = mahalanobis_sq(mean, cov, theta_true)
    if len(d2) == 0:
        msg = "coverage of an empty set of rows"
        raise ValueError(msg)
    out = {}
    for level in levels:
        if not 0 < level < 1:
            msg = f"credible levels must lie in (0, 1), got {level}"
            raise ValueError(msg)
        threshold = stats.chi2.ppf(level, df=np.shape(mean)[-1])
        out[float(level)] = float(np.mean(d2 <= threshold))
    return out


def level_key(level: float) -> str:
    """The record key of a credible level's coverage: ``coverage_68`` for 0.68."""
    return f"coverage_{round(100 * level)}"


def fom_summary(
    *,
    lmax: int,
    noise_level: str,
    fiducial_cov: Any,
    test_mean: Any,
    test_cov: Any,
    test_theta: Any,
    train_theta: Any,
    theta_std: Any,
    compressor_checkpoint: str | Path,
    levels: Sequence[float] = CALIBRATION_LEVELS,
) -> dict[str, Any]:
    """
    The ``fom_result.json`` record of one (lmax, noise level) configuration.

    Parameters
    ----------
    lmax, noise_level
        The configuration.
    fiducial_cov
        ``(n_fid, d, d)`` posterior covariances of the fiducial sim's tiles (12), normalised.
    test_mean, test_cov, test_theta
        ``(n_test, d)``, ``(n_test, d, d)``, ``(n_test, d)``: posteriors of the test tiles and
        their true parameters, normalised.
    train_theta
        ``(n_train, d)`` normalised parameters of the training tiles: their covariance is the
        prior's, whose FoM is the baseline ``fom_prior``.
    theta_std
        ``(d,)`` physical standard deviations of the normalisation.
    compressor_checkpoint
        Path of the compressor checkpoint the summaries came from (recorded as text).
    levels
        Credible levels of the calibration.

    Returns
    -------
        A JSON-ready mapping with the keys :data:`FOM_RESULT_KEYS`; every FoM in physical
        units of :data:`~lensing_core.sims.catalog.PARAM_NAMES`. ``fom_fiducial_std`` is the
        tile-to-tile sample standard deviation (``ddof=1``); ``fom_test_lo_16`` and
        ``fom_test_hi_84`` are percentiles over the test tiles; ``calibration`` holds
        ``coverage_68``, ``coverage_95`` (one entry per level) and ``n_test``.
    """
    fiducial_cov = _as_covs(fiducial_cov, "fiducial_cov")
    test_cov = _as_covs(test_cov, "test_cov")
    d = fiducial_cov.shape[-1]
    std = _as_std(theta_std, d)
    if fiducial_cov.ndim != 3 or len(fiducial_cov) == 0:
        msg = f"expected fiducial_cov of shape (n_fid, {d}, {d}), got {fiducial_cov.shape}"
        raise ValueError(msg)
    scale = float(np.prod(std))  # FoM_physical = FoM_norm / prod(theta_std)
    fom_fid = np.atleast_1d(fom_from_cov(fiducial_cov)) / scale
    fom_test = np.atleast_1d(fom_from_cov(test_cov)) / scale
    calib = coverage(test_mean, test_cov, test_theta, levels)
    lo, median, hi = np.percentile(fom_test, [16, 50, 84])
    return {
        "lmax": int(lmax),
        "noise_level": str(noise_level),
        "params": list(PARAM_NAMES) if d == len(PARAM_NAMES) else [f"p{i}" for i in range(d)],
        "fom_fiducial_median": float(np.median(fom_fid)),
        "fom_fiducial_std": float(np.std(fom_fid, ddof=1)) if len(fom_fid) > 1 else 0.0,
        "fom_fiducial_all": [float(v) for v in fom_fid],
        "fom_test_median": float(median),
        "fom_test_lo_16": float(lo),
        "fom_test_hi_84": float(hi),
        "fom_prior": prior_fom(train_theta) / scale,
        "compressor_checkpoint": str(compressor_checkpoint),
        "calibration": {
            **{level_key(level): fraction for level, fraction in calib.items()},
            "n_test": len(fom_test),
        },
    }


def write_fom_result(path: Path, record: Mapping[str, Any], *, tmp_root: Path) -> Path:
    """
    Write *record* as JSON to *path* atomically.

    Raises
    ------
    ValueError
        If the record holds a NaN or infinity, or a value JSON cannot hold; nothing is
        written then.
    """
    return write_json(Path(path), record, tmp_root=tmp_root)


def read_fom_result(path: Path) -> dict[str, Any]:
    """
    Read a record written by :func:`write_fom_result`.

    Raises
    ------
    lensing_core.io.InputMissingError
        If *path* does not exist.
    ValueError
        If it is not valid JSON or lacks a key of :data:`FOM_RESULT_KEYS`.
    """
    return read_record(path, FOM_RESULT_KEYS, what="FoM result")
