"""Figures for people: functions that return matplotlib Figures and never save or show them.

Modules
-------
figures
    Measured against theory convergence spectra; PNG encoding of a figure.
"""

from __future__ import annotations

from lensing_core.plotting.figures import figure_to_png_bytes, spectra_figure

__all__ = ["figure_to_png_bytes", "spectra_figure"]
