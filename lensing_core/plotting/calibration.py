"""The calibration-diagnostics figure, returned as a :class:`matplotlib.figure.Figure`.

Built from :class:`~matplotlib.figure.Figure` with the Agg canvas (no ``pyplot``), like
:mod:`lensing_core.plotting.fom`; encode it with
:func:`lensing_core.plotting.figures.figure_to_png_bytes`. It takes plain arrays, those of
``lensing_core.inference.calibration.CalibrationReport.figure_arrays()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lensing_core._types import FloatArray

_PARAM_LABELS = (r"$\Omega_m$", r"$S_8$")


def _vector(value: Any, name: str, n: int | None = None) -> FloatArray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 1 or (n is not None and len(arr) != n):
        want = f"({n},)" if n is not None else "(m,)"
        msg = f"expected {name} of shape {want}, got {arr.shape}"
        raise ValueError(msg)
    return arr


def calibration_figure(
    *,
    levels: Any,
    coverage: Any,
    band_lo: Any,
    band_hi: Any,
    tarp_alpha: Any,
    tarp_ecp: Any,
    rank_counts: Any,
    rank_expected: Any,
    rank_band_lo: Any,
    rank_band_hi: Any,
    ks_halfwidth: float | None = None,
    param_labels: Sequence[str] = _PARAM_LABELS,
    verdict: str | None = None,
    title: str | None = None,
) -> Figure:
    """
    Coverage curve, TARP curve and one SBC rank histogram per parameter, side by side.

    Parameters
    ----------
    levels, coverage
        ``(n_levels,)`` credible levels and the fraction of truths inside their ellipses.
    band_lo, band_hi
        ``(n_levels,)`` pointwise binomial band of a calibrated posterior's coverage.
    tarp_alpha, tarp_ecp
        ``(m,)`` TARP credibility levels and expected coverage probabilities.
    rank_counts
        ``(d, n_bins)`` rank histogram of each parameter.
    rank_expected, rank_band_lo, rank_band_hi
        ``(n_bins,)`` expected count per bin under calibration and its band.
    ks_halfwidth
        If given, the simultaneous band ``level -/+ ks_halfwidth`` of the verdict is drawn.
    param_labels
        ``d`` labels of the parameters.
    verdict
        If given, shown in the coverage panel's title.
    title
        Figure title.

    Returns
    -------
        A figure with ``2 + d`` axes: the coverage curve (with the pointwise band shaded, the
        simultaneous band dashed and the diagonal), the TARP curve with the diagonal, and one
        rank histogram per parameter with the expected count and its band.

    Raises
    ------
    ValueError
        If the arrays' shapes do not agree.
    """
    lv = _vector(levels, "levels")
    n_levels = len(lv)
    cover = _vector(coverage, "coverage", n_levels)
    lo = _vector(band_lo, "band_lo", n_levels)
    hi = _vector(band_hi, "band_hi", n_levels)
    t_alpha = _vector(tarp_alpha, "tarp_alpha")
    t_ecp = _vector(tarp_ecp, "tarp_ecp", len(t_alpha))
    counts = np.asarray(rank_counts, dtype=np.float64)
    if counts.ndim != 2:
        msg = f"expected rank_counts of shape (d, n_bins), got {counts.shape}"
        raise ValueError(msg)
    d, n_bins = counts.shape
    expected = _vector(rank_expected, "rank_expected", n_bins)
    r_lo = _vector(rank_band_lo, "rank_band_lo", n_bins)
    r_hi = _vector(rank_band_hi, "rank_band_hi", n_bins)
    if len(param_labels) != d:
        msg = f"expected {d} param_labels, got {len(param_labels)}"
        raise ValueError(msg)

    fig = Figure(figsize=(3.3 * (2 + d), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 + d)
    ax_cov, ax_tarp = axes[0], axes[1]

    ax_cov.fill_between(lv, lo, hi, color="C0", alpha=0.2, lw=0, label="binomial 95%")
    if ks_halfwidth is not None:
        grid = np.linspace(0, 1, 101)
        for sign in (-1, 1):
            ax_cov.plot(
                grid,
                np.clip(grid + sign * ks_halfwidth, 0, 1),
                color="C0",
                ls="--",
                lw=0.8,
                label="KS band" if sign < 0 else None,
            )
    ax_cov.plot([0, 1], [0, 1], color="k", lw=0.7)
    ax_cov.plot(lv, cover, "o-", color="C3", ms=2.5, lw=1.2, label="empirical")
    ax_cov.set(
        xlim=(0, 1),
        ylim=(0, 1),
        aspect="equal",
        xlabel="credible level",
        ylabel="fraction of truths inside",
        title=f"coverage: {verdict}" if verdict else "coverage",
    )
    ax_cov.legend(loc="upper left", fontsize=7, frameon=False)

    ax_tarp.plot([0, 1], [0, 1], color="k", lw=0.7)
    ax_tarp.plot(t_alpha, t_ecp, color="C2", lw=1.4, label="TARP")
    ax_tarp.set(
        xlim=(0, 1),
        ylim=(0, 1),
        aspect="equal",
        xlabel="credibility level",
        ylabel="expected coverage",
        title="TARP",
    )

    edges = np.arange(n_bins + 1)
    for j in range(d):
        ax = axes[2 + j]
        # step="post" needs the last bin's value repeated at the right edge
        ax.fill_between(
            edges,
            np.r_[r_lo, r_lo[-1]],
            np.r_[r_hi, r_hi[-1]],
            step="post",
            color="0.6",
            alpha=0.35,
            lw=0,
            label="99% band",
        )
        ax.stairs(expected, edges, color="k", lw=0.8, label="expected")
        ax.stairs(counts[j], edges, color="C0", lw=1.4, label="ranks")
        ax.set(
            xlim=(0, n_bins),
            ylim=(0, 1.3 * max(float(np.max(counts[j])), float(np.max(r_hi)), 1.0)),
            xlabel=f"rank bin of {param_labels[j]}",
            ylabel="tiles",
            title=f"SBC {param_labels[j]}",
        )
    axes[2].legend(loc="upper center", fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
