"""The figure-of-merit report figure, returned as a :class:`matplotlib.figure.Figure`.

Built from :class:`~matplotlib.figure.Figure` with the Agg canvas (no ``pyplot``), like
:mod:`lensing_core.plotting.figures`; encode it with
:func:`lensing_core.plotting.figures.figure_to_png_bytes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from scipy import stats

from lensing_core._types import FloatArray

_PARAM_LABELS = (r"$\Omega_m$", r"$S_8$")


def ellipse_axes(cov: FloatArray, level: float) -> tuple[float, float, float]:
    r"""
    Credible ellipse of a 2-d Gaussian with covariance *cov* at probability *level*.

    Returns
    -------
        Full width and height (along the major and minor axes, units of the parameters) and
        the angle of the major axis from the first parameter's axis, degrees: the arguments of
        :class:`matplotlib.patches.Ellipse`. The semi-axes are
        :math:`\sqrt{\chi^2_2{}^{-1}(p)\,\lambda_i}` for the eigenvalues :math:`\lambda_i`.
    """
    eigvals, eigvecs = np.linalg.eigh(cov)  # ascending
    radius_sq = stats.chi2.ppf(level, df=2)
    width, height = 2 * np.sqrt(radius_sq * np.clip(eigvals[::-1], 0, None))
    angle_deg = np.degrees(np.arctan2(eigvecs[1, -1], eigvecs[0, -1]))
    return float(width), float(height), float(angle_deg)


def fom_figure(
    fiducial_means: Any,
    fiducial_covs: Any,
    theta_true: Any,
    fom_values: Any,
    *,
    fiducial_fom: Any,
    title: str | None = None,
    fom_prior: float | None = None,
    levels: Sequence[float] = (0.68, 0.95),
    param_labels: Sequence[str] = _PARAM_LABELS,
) -> Figure:
    """
    Fiducial posteriors over the truth (left) and the distribution of the FoM (right).

    Parameters
    ----------
    fiducial_means, fiducial_covs
        ``(n_fid, 2)`` posterior means and ``(n_fid, 2, 2)`` covariances of the fiducial sim's
        tiles, physical units of (Omega_m, S8).
    theta_true
        ``(2,)`` the fiducial sim's parameters.
    fom_values
        ``(n_test,)`` physical FoM of the test tiles (histogram).
    fiducial_fom
        ``(n_fid,)`` physical FoM of the fiducial tiles.
    title
        Figure title (e.g. the configuration and the calibration).
    fom_prior
        If given, the prior's FoM is marked on the right panel.
    levels
        Credible levels of the ellipses: the first solid, the others dashed.
    param_labels
        Axis labels of the two parameters.

    Returns
    -------
        A figure with two axes. Left: one ellipse per fiducial tile and level, its mean as a
        dot, the truth as a black star. Right: histogram of *fom_values* with their 16-84%
        band, each fiducial tile's FoM as a red tick and their median as a red line.
    """
    means = np.asarray(fiducial_means, dtype=np.float64)
    covs = np.asarray(fiducial_covs, dtype=np.float64)
    truth = np.asarray(theta_true, dtype=np.float64)
    foms = np.asarray(fom_values, dtype=np.float64).ravel()
    if means.ndim != 2 or means.shape[1] != 2 or covs.shape != (len(means), 2, 2):
        msg = (
            "expected fiducial_means (n, 2) and fiducial_covs (n, 2, 2), got "
            f"{means.shape} and {covs.shape}"
        )
        raise ValueError(msg)
    if truth.shape != (2,):
        msg = f"expected theta_true of shape (2,), got {truth.shape}"
        raise ValueError(msg)
    fom_fid = np.asarray(fiducial_fom, dtype=np.float64).ravel()
    if fom_fid.shape != (len(means),):
        msg = f"expected fiducial_fom of shape ({len(means)},), got {fom_fid.shape}"
        raise ValueError(msg)

    fig = Figure(figsize=(10.0, 4.2))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.0, 1.1], "wspace": 0.28})

    colors = [f"C{i % 10}" for i in range(len(means))]
    for mean, cov, color in zip(means, covs, colors, strict=True):
        for k, level in enumerate(levels):
            width, height, angle = ellipse_axes(cov, level)
            left.add_patch(
                Ellipse(
                    tuple(mean),
                    width,
                    height,
                    angle=angle,
                    fill=False,
                    color=color,
                    lw=1.2 if k == 0 else 0.7,
                    ls="-" if k == 0 else "--",
                    alpha=0.9 if k == 0 else 0.5,
                )
            )
        left.plot(*mean, "o", ms=2.5, color=color)
    left.plot(*truth, "*", ms=14, color="k", mec="w", zorder=5, label="truth")
    left.axvline(truth[0], color="k", lw=0.5, ls=":")
    left.axhline(truth[1], color="k", lw=0.5, ls=":")
    left.update_datalim(truth[None, :])
    left.autoscale_view()
    level_text = " / ".join(f"{round(100 * level)}%" for level in levels)
    left.set(
        xlabel=param_labels[0],
        ylabel=param_labels[1],
        title=f"{len(means)} fiducial tiles: {level_text} ellipses",
    )
    left.legend(loc="best", fontsize=8, frameon=False)

    if len(foms):
        lo, hi = np.percentile(foms, [16, 84])
        right.hist(foms, bins="auto", color="0.7", label=f"test tiles ({len(foms)})")
        right.axvspan(lo, hi, color="C0", alpha=0.12, lw=0, label="test 16-84%")
    for value in fom_fid:
        right.axvline(value, ymax=0.08, color="C3", lw=1.2)
    right.axvline(
        np.median(fom_fid),
        color="C3",
        lw=1.8,
        label=f"fiducial median {np.median(fom_fid):.4g} (ticks: {len(fom_fid)} tiles)",
    )
    if fom_prior is not None:
        right.axvline(fom_prior, color="k", ls="--", lw=1.2, label=f"prior {fom_prior:.4g}")
    right.set(
        xlabel=f"FoM = 1/sqrt(det Cov) of ({', '.join(param_labels)})",
        ylabel="tiles",
        title="figure of merit",
    )
    right.legend(loc="upper right", fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
