"""The study's figure: the figure of merit against lmax, one panel per noise level.

Built from :class:`~matplotlib.figure.Figure` with the Agg canvas (no ``pyplot``), like
:mod:`lensing_core.plotting.figures`; encode it with
:func:`lensing_core.plotting.figures.figure_to_png_bytes`. The inputs are plain arrays, so
this layer needs nothing of :mod:`lensing_core.inference` (which gathers them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Label and colour of the known curves; any other name is drawn with its name as label.
CURVE_STYLES: dict[str, tuple[str, str]] = {
    "field": ("field level (NPE)", "C0"),
    "cl": ("power spectrum (NPE)", "C1"),
    "fisher": ("Fisher forecast", "k"),
}
NO_RESULTS_TEXT = "no results"
_PANEL_INCH = (4.4, 4.0)
_LOG_MARGIN = 1.5  # the y range reaches this factor beyond the extreme values drawn
_DODGE = 0.25  # horizontal shift between curves, as a fraction of the x margin
_TINY = 1e-6  # a band's lower edge at zero, as a fraction of its median (off the log axis)

#: One value per lmax; NaN or None where missing.
Values: TypeAlias = Sequence[float | None] | npt.ArrayLike


def _values(values: Values | None, n: int, what: str) -> np.ndarray:
    """``(n,)`` float array (NaN where absent) of *values*; all NaN when *values* is None."""
    if values is None:
        return np.full(n, np.nan)
    array = np.array(values, dtype=np.float64)  # None -> NaN
    if array.shape != (n,):
        msg = f"expected {what} of shape ({n},), one value per lmax, got {array.shape}"
        raise ValueError(msg)
    return array


def _draw_curve(
    ax: Axes, lmax: np.ndarray, fom: np.ndarray, std: np.ndarray, name: str
) -> tuple[list[float], Any]:
    """Draw one curve (with its scatter band where known): the y values drawn, the handle."""
    label, color = CURVE_STYLES.get(name, (name, None))
    shown = np.isfinite(fom) & (fom > 0)
    if not shown.any():
        return [], None
    median = np.where(shown, fom, np.nan)  # NaN breaks the line: missing points are absent
    has_band = shown & np.isfinite(std) & (std >= 0)
    if not has_band.any():
        (line,) = ax.plot(lmax, median, "s-", ms=4, lw=1.6, color=color, label=label)
        return median[shown].tolist(), line
    hi = np.where(has_band, median + std, np.nan)
    lo = np.where(has_band & (median - std > 0), median - std, np.nan)
    # a band reaching zero cannot be drawn on a log axis: it runs to the bottom of the panel
    # (the y range comes from the values drawn, so the tiny stand-in is cut off there)
    lo_drawn = np.where(has_band & ~np.isfinite(lo), median * _TINY, lo)
    handle = ax.errorbar(
        lmax,
        median,
        yerr=np.nan_to_num(np.stack([median - lo_drawn, hi - median])),  # no bar: zero
        fmt="o-",
        ms=4,
        lw=1.4,
        capsize=3,
        color=color,
        label=f"{label}, median ± tile std",
    )
    ax.fill_between(lmax, lo_drawn, hi, color=color, alpha=0.15)
    return [*median[shown], *hi[np.isfinite(hi)], *lo[np.isfinite(lo)]], handle


def study_figure(
    lmax: Sequence[int],
    fom: Mapping[str, Mapping[str, Values]],
    *,
    fom_std: Mapping[str, Mapping[str, Values]] | None = None,
    title: str | None = None,
) -> Figure:
    """
    The figure of merit against lmax: one panel per noise level, one curve per method.

    Parameters
    ----------
    lmax
        ``(n_lmax,)`` the band limits (x axis), increasing.
    fom
        Noise level (panel, in this order) -> curve name (``"field"``, ``"cl"``,
        ``"fisher"`` or any other, drawn in this order) -> ``(n_lmax,)`` FoM of (Omega_m, S8)
        at each lmax, physical units; NaN or None where the result is missing.
    fom_std
        The same keys -> ``(n_lmax,)`` tile-to-tile standard deviation of the FoM, drawn as a
        band ``median ± std``; a curve absent here (the Fisher forecast) is a plain line.
    title
        Figure title.

    Returns
    -------
        A figure with one panel per noise level, FoM on a log axis. Missing points are left
        out (the line breaks there); a panel with no point at all says ``"no results"`` in
        its middle.

    Raises
    ------
    ValueError
        A curve without one value per lmax, or no panel.
    """
    x = np.asarray(lmax, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        msg = f"expected lmax of shape (n_lmax,) with n_lmax > 0, got {x.shape}"
        raise ValueError(msg)
    if not fom:
        msg = "expected at least one noise level (panel) in fom, got none"
        raise ValueError(msg)
    stds = fom_std or {}
    pad = 0.08 * float(x[-1] - x[0]) or 50.0  # x margin, lmax units

    n_panels = len(fom)
    fig = Figure(figsize=(_PANEL_INCH[0] * n_panels, _PANEL_INCH[1]))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    for ax, (noise_level, curves) in zip(axes, fom.items(), strict=True):
        drawn: list[float] = []
        handles = []
        for index, (name, values) in enumerate(curves.items()):
            what = f"fom[{noise_level!r}][{name!r}]"
            median = _values(values, len(x), what)
            std = _values(stds.get(noise_level, {}).get(name), len(x), f"fom_std of {what}")
            dodge = (index - (len(curves) - 1) / 2) * _DODGE * pad  # curves side by side
            values_drawn, handle = _draw_curve(ax, x + dodge, median, std, name)
            drawn += values_drawn
            if handle is not None:
                handles.append(handle)
        ax.set(xlabel=r"$\ell_{\max}$", title=noise_level, xticks=x, xlim=(x[0] - pad, x[-1] + pad))
        ax.set_xticklabels([f"{v:g}" for v in x])
        if not drawn:
            ax.text(
                0.5, 0.5, NO_RESULTS_TEXT, transform=ax.transAxes,
                ha="center", va="center", color="0.4", fontsize=12,
            )  # fmt: skip
            ax.set_yticks([])
            continue
        ax.set_yscale("log")
        ax.set_ylim(min(drawn) / _LOG_MARGIN, max(drawn) * _LOG_MARGIN)
        ax.grid(which="major", axis="y", color="0.9", lw=0.6)
        ax.legend(handles=handles, loc="best", fontsize=7, frameon=False)  # in curve order
    axes[0].set_ylabel(r"FoM of ($\Omega_m$, $S_8$), one tile")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.85, wspace=0.22)
    return fig
