"""Tile gallery and scheme coverage figures: layout, colour limits, PNG size, errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lensing_core.plotting import coverage_figure, figure_to_png_bytes, tile_gallery
from lensing_core.sky.tiles import sky_coverage, tile_membership

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PNG_BYTES = 150_000
SCHEMES = ("belts", "legacy")


@pytest.fixture(scope="module")
def small_tiles() -> np.ndarray:
    """Random tiles (12, 4, 32, 32), float32, a different scale per bin."""
    rng = np.random.default_rng(0)
    scale = np.array([0.01, 0.02, 0.04, 0.08])[None, :, None, None]
    return (rng.normal(size=(12, 4, 32, 32)) * scale).astype(np.float32)


@pytest.fixture(scope="module")
def coverage_figures() -> dict[str, Figure]:
    return {scheme: coverage_figure(scheme, nside=32) for scheme in SCHEMES}


def _image_axes(fig: Figure) -> list[Axes]:
    return [ax for ax in fig.axes if ax.images]


def test_gallery_layout(small_tiles: np.ndarray) -> None:
    """One image per (tile, bin), one colorbar per bin, labelled rows and columns, no ticks."""
    fig = tile_gallery(small_tiles, title="tiles[109|200]", noise_label="des_y3")
    images = _image_axes(fig)
    assert len(images) == 3 * 4
    assert len(fig.axes) == 3 * 4 + 4  # plus one colorbar per bin column
    assert [ax.get_title() for ax in images[:4]] == [f"bin {b}" for b in range(4)]
    assert [ax.get_ylabel() for ax in images if ax.get_ylabel()] == ["tile 0", "tile 4", "tile 8"]
    assert all(not ax.get_xticks().size and not ax.get_yticks().size for ax in images)
    assert fig.get_suptitle() == "tiles[109|200] - des_y3"
    # row r, column b shows tile_ids[r], bin b, with x horizontal
    np.testing.assert_array_equal(images[1 * 4 + 2].images[0].get_array(), small_tiles[4, 2].T)
    assert images[0].images[0].origin == "lower"


def test_gallery_custom_tiles(small_tiles: np.ndarray) -> None:
    fig = tile_gallery(small_tiles[:, :2], tile_ids=(3, 11))
    images = _image_axes(fig)
    assert len(images) == 2 * 2
    assert [ax.get_ylabel() for ax in images if ax.get_ylabel()] == ["tile 3", "tile 11"]
    assert not fig.get_suptitle()


def test_gallery_colour_limits_symmetric_per_bin(small_tiles: np.ndarray) -> None:
    """Every column shares limits [-v, v], v the 99.5th percentile of |kappa| of its tiles."""
    fig = tile_gallery(small_tiles)
    images = _image_axes(fig)
    limits = np.array([ax.images[0].get_clim() for ax in images]).reshape(3, 4, 2)
    np.testing.assert_array_equal(limits[..., 0], -limits[..., 1])
    np.testing.assert_array_equal(limits, np.broadcast_to(limits[:1], limits.shape))
    expected = [np.percentile(np.abs(small_tiles[[0, 4, 8], b]), 99.5) for b in range(4)]
    np.testing.assert_allclose(limits[0, :, 1], expected, rtol=1e-6)
    assert np.all(np.diff(limits[0, :, 1]) > 0)  # the bins' scales grow, so do the limits


def test_gallery_constant_tiles_get_a_finite_scale() -> None:
    fig = tile_gallery(np.zeros((12, 1, 8, 8), np.float32))
    assert _image_axes(fig)[0].images[0].get_clim() == (-1.0, 1.0)


@pytest.mark.parametrize(
    ("shape", "tile_ids", "expected"),
    [
        ((12, 4, 32), (0, 4, 8), "(12, n_bins, n, n), got (12, 4, 32)"),
        ((11, 4, 32, 32), (0, 4, 8), "(12, n_bins, n, n), got (11, 4, 32, 32)"),
        ((12, 4, 32, 16), (0, 4, 8), "(12, n_bins, n, n), got (12, 4, 32, 16)"),
        ((12, 0, 32, 32), (0, 4, 8), "got tiles of shape (12, 0, 32, 32)"),
        ((12, 4, 32, 32), (0, 12), "tile_ids in 0..11 (at least one), got (0, 12)"),
        ((12, 4, 32, 32), (), "got ()"),
    ],
    ids=["3d", "11-tiles", "not-square", "no-bins", "id-12", "no-ids"],
)
def test_gallery_bad_input(
    shape: tuple[int, ...], tile_ids: tuple[int, ...], expected: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)):
        tile_gallery(np.zeros(shape, np.float32), tile_ids=tile_ids)


def test_gallery_png_at_tile_resolution() -> None:
    """At n = 128 with noise-like (least compressible) tiles the PNG stays under 150 KB."""
    tiles = np.random.default_rng(1).normal(size=(12, 4, 128, 128)).astype(np.float32)
    png = figure_to_png_bytes(tile_gallery(tiles))
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) < MAX_PNG_BYTES


def test_tile_membership_agrees_with_sky_coverage() -> None:
    """One implementation: the union of the memberships is the covered fraction."""
    for scheme in SCHEMES:
        membership = tile_membership(scheme, nside=16)
        assert membership.shape == (12, 12 * 16**2)
        assert membership.dtype == bool
        assert membership.sum(axis=0).max() <= 3  # each orientation's 4 tiles are disjoint
        coverage, _ = sky_coverage(scheme, nside=16)
        assert membership.any(axis=0).mean() == coverage


@pytest.mark.parametrize("scheme", SCHEMES)
def test_coverage_figure_reports_sky_coverage(
    coverage_figures: dict[str, Figure], scheme: str
) -> None:
    """The map title gives sky_coverage's fraction; the matrix title its largest overlap."""
    fig = coverage_figures[scheme]
    sky, matrix = (ax for ax in fig.axes if ax.get_title())
    assert sky.name == "mollweide"
    coverage, overlap = sky_coverage(scheme, nside=32)
    assert f"sky coverage {coverage:.3f}" in sky.get_title()
    assert f"max {overlap.max():.3f}" in matrix.get_title()
    np.testing.assert_array_equal(matrix.images[0].get_array(), overlap)
    assert len(fig.axes) == 4  # two panels, two colorbars


def test_coverage_fractions_differ_between_schemes(coverage_figures: dict[str, Figure]) -> None:
    """Belts cover most of the sky and legacy about half, as sky_coverage says."""
    reported = {
        scheme: float(re.search(r"sky coverage (\d\.\d+)", fig.axes[0].get_title()).group(1))
        for scheme, fig in coverage_figures.items()
    }
    for scheme, value in reported.items():
        assert value == pytest.approx(sky_coverage(scheme, nside=32)[0], abs=5e-4)
    assert reported["belts"] > reported["legacy"] + 0.3


@pytest.mark.parametrize("scheme", SCHEMES)
def test_coverage_png(scheme: str) -> None:
    png = figure_to_png_bytes(coverage_figure(scheme))
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) < MAX_PNG_BYTES


def test_coverage_figure_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="spiral"):
        coverage_figure("spiral")
