"""Tests of :mod:`lensing_core.sky.healpix`: checked HEALPix helpers and the face layout."""

from __future__ import annotations

import healpy as hp
import numpy as np
import pytest

from lensing_core.sky.healpix import (
    EQUATORIAL_FACES,
    check_maps,
    face_ring_indices,
    nside_from_npix,
)


@pytest.mark.parametrize("nside", [1, 2, 16, 64, 1024])
def test_nside_from_npix_accepts_healpix_sizes(nside: int) -> None:
    """``12 nside**2`` pixels give back nside for power-of-two nsides."""
    assert nside_from_npix(12 * nside**2) == nside


@pytest.mark.parametrize(
    "npix",
    [
        0,  # empty
        1,
        11,
        13,
        12 * 16**2 + 1,  # one pixel too many
        12 * 16**2 - 1,
        12 * 3**2,  # nside 3 is not a power of two
        12 * 24**2,  # nside 24 is not a power of two
        1000,
    ],
)
def test_nside_from_npix_rejects_other_sizes(npix: int) -> None:
    """Sizes that are not ``12 nside**2`` with nside a power of two raise ``ValueError``."""
    with pytest.raises(ValueError, match=rf"{npix} pixels is not a HEALPix map"):
        nside_from_npix(npix)


def test_check_maps_returns_nside_of_valid_stack() -> None:
    """A finite (n_maps, 12 nside^2) stack passes and reports its nside."""
    assert check_maps(np.zeros((4, 12 * 8**2))) == 8
    assert check_maps(np.ones((1, 12 * 32**2), dtype=np.float32)) == 32


def _with_bad_value(value: float) -> np.ndarray:
    maps = np.zeros((3, 12 * 4**2))
    maps[1, 17] = value
    return maps


@pytest.mark.parametrize(
    ("maps", "problem"),
    [
        (np.zeros(12 * 4**2), r"expected an array \(n_maps, npix\), got shape \(192,\)"),
        (np.zeros((2, 3, 12 * 4**2)), r"expected an array \(n_maps, npix\)"),
        (_with_bad_value(np.nan), r"1 NaN or infinite pixels, in map\(s\) \[1\]"),
        (_with_bad_value(np.inf), r"1 NaN or infinite pixels, in map\(s\) \[1\]"),
        (_with_bad_value(-np.inf), r"NaN or infinite"),
        (np.zeros((2, 1000)), r"1000 pixels is not a HEALPix map"),
        (np.zeros((2, 12 * 3**2)), r"108 pixels is not a HEALPix map"),
    ],
    ids=["1-d", "3-d", "nan", "inf", "-inf", "npix-1000", "nside-3"],
)
def test_check_maps_errors_name_the_maps(maps: np.ndarray, problem: str) -> None:
    """Every rejection is a ``ValueError`` starting with the caller's label and naming the fault."""
    what = "kappa maps of sim 109 (kappa/sim00109.npz)"
    with pytest.raises(ValueError, match=problem) as info:
        check_maps(maps, what=what)
    assert str(info.value).startswith(what + ":")


@pytest.mark.parametrize("nside", [1, 4, 16, 32])
def test_face_ring_indices_is_a_permutation_of_all_pixels(nside: int) -> None:
    """The 12 faces of nside x nside pixels hold every RING pixel exactly once."""
    index = face_ring_indices(nside)
    assert index.shape == (12, nside, nside)
    assert np.issubdtype(index.dtype, np.integer)
    np.testing.assert_array_equal(np.sort(index.ravel()), np.arange(12 * nside**2))


@pytest.mark.parametrize("nside", [2, 8, 32])
def test_face_ring_indices_agrees_with_pix2xyf(nside: int) -> None:
    """``healpy.pix2xyf`` of entry ``[f, x, y]`` (RING) gives back ``(x, y, f)``."""
    index = face_ring_indices(nside)
    x, y, f = hp.pix2xyf(nside, index.ravel(), nest=False)
    ff, xx, yy = np.meshgrid(np.arange(12), np.arange(nside), np.arange(nside), indexing="ij")
    np.testing.assert_array_equal(f, ff.ravel())
    np.testing.assert_array_equal(x, xx.ravel())
    np.testing.assert_array_equal(y, yy.ravel())


def test_face_ring_indices_is_read_only_and_equatorial_faces() -> None:
    """The cached layout cannot be modified; tiles are cut from faces 4..7."""
    index = face_ring_indices(8)
    with pytest.raises(ValueError, match="read-only"):
        index[0, 0, 0] = 1
    assert EQUATORIAL_FACES == (4, 5, 6, 7)
    # equatorial faces straddle the equator: their pixel centres have |z| <= 2/3
    z = hp.pix2vec(8, index[list(EQUATORIAL_FACES)].ravel())[2]
    assert np.abs(z).max() <= 2 / 3 + 1e-12
