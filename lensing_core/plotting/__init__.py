"""Figures for people: functions that return matplotlib Figures and never save or show them.

Modules
-------
figures
    Measured against theory convergence spectra; PNG encoding of a figure
    (``spectra_figure``, ``figure_to_png_bytes``).
tiles
    Tile gallery of one noise level, one row per tile and one column per bin
    (``tile_gallery``); sky coverage map and 12 x 12 overlap matrix of an orientation
    scheme (``coverage_figure``).
"""

from __future__ import annotations

from lensing_core.plotting.figures import figure_to_png_bytes, spectra_figure
from lensing_core.plotting.tiles import coverage_figure, tile_gallery

__all__ = ["coverage_figure", "figure_to_png_bytes", "spectra_figure", "tile_gallery"]
