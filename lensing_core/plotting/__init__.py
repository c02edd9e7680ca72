"""Figures for people: functions that return matplotlib Figures and never save or show them.

No ``pyplot``: figures are built from :class:`~matplotlib.figure.Figure` with the Agg canvas,
so nothing touches pyplot's global state or a display, and callers store the PNG bytes of
:func:`lensing_core.plotting.figures.figure_to_png_bytes` as asset metadata or report files.
"""

from __future__ import annotations

from lensing_core.plotting.figures import figure_to_png_bytes, spectra_figure
from lensing_core.plotting.tiles import coverage_figure, tile_gallery

__all__ = ["coverage_figure", "figure_to_png_bytes", "spectra_figure", "tile_gallery"]
