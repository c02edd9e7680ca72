"""Figures of the flat tiles and of the sky their orientation scheme covers.

Built from :class:`~matplotlib.figure.Figure` with the Agg canvas (no ``pyplot``), like
:mod:`lensing_core.plotting.figures`; encode them with
:func:`lensing_core.plotting.figures.figure_to_png_bytes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from lensing_core._types import FloatArray
from lensing_core.sky.tiles import N_TILES, sky_coverage, tile_membership

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DEFAULT_TILE_IDS = (0, 4, 8)  # one tile of each orientation
KAPPA_PERCENTILE = 99.5  # colour limit of a bin: this percentile of |kappa| over its shown tiles
_TILE_CELL_INCH = 1.7
_MAP_GRID = (480, 240)  # (lon, lat) cells of the Mollweide raster, finer than 72-dpi pixels
_COUNT_COLORS = ("#d9d9d9", "#4c72b0", "#dd8452")  # pixels in 0, 1, 2+ tiles


def _check_tiles(tiles: FloatArray, tile_ids: Sequence[int]) -> tuple[np.ndarray, list[int]]:
    """Tiles as an array ``(12, n_bins, n, n)`` and the chosen ids, validated."""
    array = np.asarray(tiles)
    if array.ndim != 4 or array.shape[0] != N_TILES or array.shape[2] != array.shape[3]:
        msg = f"expected tiles of shape ({N_TILES}, n_bins, n, n), got {array.shape}"
        raise ValueError(msg)
    if array.shape[1] == 0 or array.shape[2] == 0:
        msg = f"expected at least one bin and one pixel, got tiles of shape {array.shape}"
        raise ValueError(msg)
    ids = [int(t) for t in tile_ids]
    if not ids or any(not 0 <= t < N_TILES for t in ids):
        msg = f"expected tile_ids in 0..{N_TILES - 1} (at least one), got {tuple(tile_ids)}"
        raise ValueError(msg)
    return array, ids


def _symmetric_limit(values: np.ndarray) -> float:
    """The KAPPA_PERCENTILE of ``|values|`` over finite values; 1 if that is not positive."""
    finite = np.abs(values[np.isfinite(values)])
    limit = float(np.percentile(finite, KAPPA_PERCENTILE)) if finite.size else 0.0
    return limit if limit > 0 else 1.0


def tile_gallery(
    tiles: FloatArray,
    *,
    tile_ids: Sequence[int] = DEFAULT_TILE_IDS,
    title: str | None = None,
    noise_label: str | None = None,
) -> Figure:
    """
    A few tiles of one noise level: one row per chosen tile, one column per bin.

    Parameters
    ----------
    tiles
        Convergence tiles of one noise level, shape ``(12, n_bins, n, n)``, indexed
        ``[orientation * 4 + face_index, bin, x, y]`` as returned by
        :func:`~lensing_core.sky.tiles.extract_tiles`; dimensionless.
    tile_ids
        Tiles to show, in row order; by default the first tile of each orientation.
    title
        Figure title (e.g. the sim and lmax).
    noise_label
        Noise level of the tiles, appended to the title.

    Returns
    -------
        A figure of ``len(tile_ids) x n_bins`` image axes, each tile drawn with ``x`` to the
        right and ``y`` up (``origin="lower"``), ticks off, plus one horizontal colorbar per
        bin column. A column shares the symmetric colour range ``[-v, v]`` with ``v`` the
        99.5th percentile of ``|kappa|`` over its shown tiles, so a few extreme pixels do not
        wash out the rest.

    Raises
    ------
    ValueError
        If *tiles* is not ``(12, n_bins, n, n)`` or a tile id is outside ``0..11``.
    """
    # heavy: imported where used, so loading the code location stays light
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    array, ids = _check_tiles(tiles, tile_ids)
    n_bins = array.shape[1]
    shown = array[ids]  # (n_rows, n_bins, n, n)
    fig = Figure(
        figsize=(_TILE_CELL_INCH * n_bins, _TILE_CELL_INCH * len(ids) + 0.9),
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(ids), n_bins, squeeze=False)
    for b in range(n_bins):
        limit = _symmetric_limit(shown[:, b])
        for row, tile_id in enumerate(ids):
            ax = axes[row, b]
            # tiles are [x, y]; the transpose puts x along the horizontal axis
            image = ax.imshow(
                shown[row, b].T,
                origin="lower",
                cmap="RdBu_r",
                vmin=-limit,
                vmax=limit,
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"bin {b}", fontsize=9)
            if b == 0:
                ax.set_ylabel(f"tile {tile_id}", fontsize=9)
        colorbar = fig.colorbar(
            image, ax=axes[:, b], location="bottom", shrink=0.85, aspect=15, pad=0.01
        )
        colorbar.set_ticks([-limit, 0.0, limit])
        colorbar.ax.tick_params(labelsize=7)
        colorbar.ax.xaxis.set_major_formatter("{x:.2g}")
    parts = [part for part in (title, noise_label) if part]
    if parts:
        fig.suptitle(" - ".join(parts), fontsize=10)
    return fig


def _tile_counts_on_grid(
    counts: np.ndarray, nside: int, n_lon: int, n_lat: int
) -> tuple[FloatArray, FloatArray, np.ndarray]:
    """Cell edges (radians, Mollweide convention) and the count of each cell's centre pixel."""
    import healpy as hp

    lon_edges_rad = np.linspace(-np.pi, np.pi, n_lon + 1)
    lat_edges_rad = np.linspace(-np.pi / 2, np.pi / 2, n_lat + 1)
    lon_rad = 0.5 * (lon_edges_rad[1:] + lon_edges_rad[:-1])
    lat_rad = 0.5 * (lat_edges_rad[1:] + lat_edges_rad[:-1])
    lon_grid, lat_grid = np.meshgrid(lon_rad, lat_rad)  # (n_lat, n_lon)
    ipix = hp.ang2pix(nside, np.pi / 2 - lat_grid, np.mod(lon_grid, 2 * np.pi))  # RING
    return lon_edges_rad, lat_edges_rad, counts[ipix]


def coverage_figure(scheme: str, *, nside: int = 64) -> Figure:
    """
    Sky covered by the 12 tiles of an orientation scheme, and their pairwise overlap.

    Parameters
    ----------
    scheme
        Orientation scheme name (see :func:`~lensing_core.sky.rotations.orientation_matrices`).
    nside
        Sampling resolution, as in :func:`~lensing_core.sky.tiles.sky_coverage`.

    Returns
    -------
        A figure with two panels. Left: Mollweide map of the original sky (longitude
        increasing to the right) coloured by how many tiles contain each HEALPix pixel
        centre (0, 1, 2+), from :func:`~lensing_core.sky.tiles.tile_membership`; its title
        gives the covered fraction of :func:`~lensing_core.sky.tiles.sky_coverage` to three
        decimals. Right: the ``(12, 12)`` overlap matrix (``[i, j]``: fraction of tile i's
        area also in tile j) with a colorbar; its title gives the largest entry.

    Raises
    ------
    ValueError
        For an unknown scheme.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.figure import Figure

    coverage, overlap = sky_coverage(scheme, nside)
    counts = np.minimum(tile_membership(scheme, nside).sum(axis=0), 2)  # (npix,) 0, 1 or 2+
    fractions = [float(np.mean(counts == c)) for c in range(3)]

    fig = Figure(figsize=(11.0, 4.2))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 2, width_ratios=[1.7, 1.0], left=0.03, right=0.97, wspace=0.12)
    sky = fig.add_subplot(grid[0], projection="mollweide")
    lon_edges_rad, lat_edges_rad, cells = _tile_counts_on_grid(counts, nside, *_MAP_GRID)
    mesh = sky.pcolormesh(
        lon_edges_rad,
        lat_edges_rad,
        cells,
        cmap=ListedColormap(_COUNT_COLORS),
        norm=BoundaryNorm([-0.5, 0.5, 1.5, 2.5], ncolors=3),
        shading="flat",
        antialiased=False,
        rasterized=True,
    )
    sky.grid(visible=True, lw=0.3, color="0.3")
    sky.tick_params(labelsize=6)
    sky.set_title(f"{scheme}: sky coverage {coverage:.3f} (nside {nside})", fontsize=10)
    colorbar = fig.colorbar(mesh, ax=sky, location="bottom", shrink=0.5, aspect=30, pad=0.06)
    colorbar.set_ticks(
        [0, 1, 2],
        labels=[
            f"{label} tiles ({fraction:.1%})"
            for label, fraction in zip(("0", "1", "2+"), fractions, strict=True)
        ],
    )
    colorbar.ax.tick_params(labelsize=7)

    matrix = fig.add_subplot(grid[1])
    largest = float(overlap.max())
    image = matrix.imshow(overlap, cmap="viridis", vmin=0.0, vmax=largest if largest > 0 else 1.0)
    for edge in (3.5, 7.5):  # orientation boundaries
        matrix.axhline(edge, color="w", lw=0.6)
        matrix.axvline(edge, color="w", lw=0.6)
    matrix.set_xticks(range(N_TILES))
    matrix.set_yticks(range(N_TILES))
    matrix.tick_params(labelsize=7)
    matrix.set(xlabel="tile j", ylabel="tile i")
    matrix.set_title(f"overlap: fraction of tile i in tile j (max {largest:.3f})", fontsize=10)
    fig.colorbar(image, ax=matrix, shrink=0.85).ax.tick_params(labelsize=7)
    return fig
