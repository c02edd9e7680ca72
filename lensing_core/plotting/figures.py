"""Figures returned as :class:`matplotlib.figure.Figure` objects, never saved or shown here.

No ``pyplot``: figures are built from :class:`~matplotlib.figure.Figure` directly and
rendered with the Agg canvas, so nothing touches pyplot's global state or a display.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lensing_core.validation import SpectraComparison, SpectraVerdict

_N_COLS = 5  # the 10 pairs of 4 bins: 2 rows of 5 panels
_RATIO_YLIM = (0.5, 1.5)
_ELL_TICKS = (2, 5, 10, 20, 50, 100, 200, 500, 1000)


def _ell_factor(ell: np.ndarray) -> np.ndarray:
    return ell * (ell + 1) / (2 * np.pi)


def spectra_figure(
    comparison: SpectraComparison,
    verdict: SpectraVerdict | None = None,
    *,
    title: str | None = None,
) -> Figure:
    r"""
    Measured against theory spectra of every bin pair, with the band ratios below.

    Parameters
    ----------
    comparison
        Output of :func:`lensing_core.validation.compare_to_theory`.
    verdict
        If given, the tolerance of each band is drawn as a grey band around one and the
        bands outside it are drawn in red.
    title
        Figure title (e.g. the sim and source).

    Returns
    -------
        A figure with one upper panel per pair ``i <= j`` showing
        :math:`\ell(\ell+1)C_\ell/2\pi` on log-log axes (measured per multipole, measured
        band powers with Gaussian cosmic-variance errors, theory line) and a lower panel
        showing measured/theory per band with its error.
    """
    # heavy: imported where used, so loading the code location stays light
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter, NullLocator

    n_pairs = len(comparison.pairs)
    n_rows = -(-n_pairs // _N_COLS)
    fig = Figure(figsize=(2.6 * _N_COLS, 3.3 * n_rows))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(
        n_rows, _N_COLS, left=0.06, right=0.99, bottom=0.07, top=0.9, wspace=0.3, hspace=0.3
    )
    ell = np.arange(comparison.ell_max + 1)
    shown = ell >= 2
    centres = comparison.ell_centres
    half_width = np.stack([centres - comparison.edges[:-1], comparison.edges[1:] - 1 - centres])
    for k, (i, j) in enumerate(comparison.pairs):
        row, col = divmod(k, _N_COLS)
        cell = grid[row, col].subgridspec(2, 1, height_ratios=[2.2, 1.0], hspace=0.05)
        top = fig.add_subplot(cell[0])
        bottom = fig.add_subplot(cell[1], sharex=top)
        factor = _ell_factor(ell[shown])
        top.plot(
            ell[shown],
            factor * comparison.measured_cls[i, j, shown],
            color="0.65",
            lw=0.6,
            label="measured",
        )
        top.plot(
            ell[shown],
            factor * comparison.theory_cls[i, j, shown],
            color="C0",
            lw=1.2,
            label="theory",
        )
        band_factor = _ell_factor(centres)
        top.errorbar(
            centres,
            band_factor * comparison.measured[k],
            yerr=band_factor * comparison.sigma[k],
            xerr=half_width,
            fmt="o",
            ms=2.5,
            color="k",
            lw=0.8,
            label="band powers",
        )
        if k == 0:
            top.legend(fontsize=6, loc="lower right", frameon=False)
        top.axvspan(2, comparison.ell_min, color="0.92", lw=0)
        top.set(xscale="log", yscale="log", title=f"bins {i},{j}")
        top.tick_params(which="both", labelbottom=False, labelsize=7)

        ratio = comparison.ratio[k]
        outside = np.zeros(ratio.shape, dtype=bool)
        if verdict is not None:
            tol = verdict.tolerance[k]
            edges = comparison.edges
            bottom.fill_between(
                edges, np.append(1 - tol, 1 - tol[-1]), np.append(1 + tol, 1 + tol[-1]),
                step="post", color="0.85", lw=0,
            )  # fmt: skip
            outside = np.abs(ratio - 1) >= tol
        bottom.axhline(1.0, color="C0", lw=1)
        for mask, color in ((~outside, "k"), (outside, "C3")):
            bottom.errorbar(
                centres[mask],
                np.clip(ratio[mask], *_RATIO_YLIM),
                yerr=comparison.ratio_sigma[k][mask],
                fmt="o",
                ms=2.5,
                color=color,
                lw=0.8,
            )
        bottom.set(xscale="log", ylim=_RATIO_YLIM, xlim=(2, comparison.ell_max * 1.1))
        bottom.xaxis.set_major_locator(FixedLocator(_ELL_TICKS))
        bottom.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        bottom.xaxis.set_minor_formatter(NullFormatter())
        # no minor ticks on the log axes (x shared): drawing them was half the kappa checks'
        # time (profiled: 1.2 s of 2.3 s per sim)
        bottom.xaxis.set_minor_locator(NullLocator())
        top.yaxis.set_minor_locator(NullLocator())
        bottom.tick_params(labelsize=7)
        if col == 0:
            top.set_ylabel(r"$\ell(\ell+1)C_\ell/2\pi$", fontsize=8)
            bottom.set_ylabel("measured / theory", fontsize=8)
        if row == n_rows - 1:
            bottom.set_xlabel(r"$\ell$", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def figure_to_png_bytes(fig: Figure, *, dpi: int = 72, colors: int | None = 64) -> bytes:
    """
    Encode *fig* as PNG.

    Parameters
    ----------
    fig
        The figure.
    dpi
        Resolution.
    colors
        If given, the image is reduced to a palette of this many colours (Pillow's
        quantisation), which keeps a line plot legible at a third of the size: the
        spectra figure (13 x 6.6 inches at 72 dpi) takes about 25 KB instead of about 90 KB,
        small enough to embed in Dagster metadata. ``None`` keeps full colour.

    Returns
    -------
        The PNG file's bytes (they start with the PNG signature, byte 0x89 then ``PNG``).
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    if colors is None:
        return buffer.getvalue()
    with Image.open(buffer) as image:
        palette = image.convert("RGB").quantize(colors=colors)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue()
