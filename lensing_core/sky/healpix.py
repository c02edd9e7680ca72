"""Checked HEALPix helpers and the base-face pixel layout.

Maps are RING-ordered, with ``npix = 12 nside**2`` and a power-of-two nside; a stack of maps
has shape ``(n_maps, npix)``. The 12 base faces are addressed as square images in their NESTED
``(x, y)`` coordinates, which is how flat tiles are cut from a map.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from lensing_core._types import FloatArray, IntArray

#: The four equatorial base faces that tiles are cut from.
EQUATORIAL_FACES: tuple[int, ...] = (4, 5, 6, 7)


def nside_from_npix(npix: int) -> int:
    """
    Return the HEALPix nside of a map with *npix* pixels.

    Raises
    ------
    ValueError
        If *npix* is not ``12 * nside**2`` for a power-of-two nside.

    Examples
    --------
    >>> nside_from_npix(12 * 64**2)
    64
    """
    nside = round((npix / 12) ** 0.5)
    if nside < 1 or 12 * nside * nside != npix or nside & (nside - 1):
        msg = f"{npix} pixels is not a HEALPix map (expected 12 * nside**2, nside a power of two)"
        raise ValueError(msg)
    return nside


def check_maps(maps: FloatArray, *, what: str = "map stack") -> int:
    """
    Validate a stack of HEALPix maps and return their nside.

    Parameters
    ----------
    maps
        Maps, shape ``(n_maps, npix)``, RING ordering.
    what
        How to name the maps in an error (e.g. ``"kappa maps of sim 109 (kappa/sim00109.npz)"``).

    Returns
    -------
        The common nside.

    Raises
    ------
    ValueError
        If the array is not 2-d, is not a HEALPix size, or holds NaN or infinite values.
    """
    if maps.ndim != 2:
        msg = f"{what}: expected an array (n_maps, npix), got shape {maps.shape}"
        raise ValueError(msg)
    try:
        nside = nside_from_npix(maps.shape[1])
    except ValueError as err:
        msg = f"{what}: {err}"
        raise ValueError(msg) from None
    finite = np.isfinite(maps)
    if not finite.all():
        bad = np.flatnonzero(~finite.all(axis=1)).tolist()
        msg = f"{what}: {int((~finite).sum())} NaN or infinite pixels, in map(s) {bad}"
        raise ValueError(msg)
    return nside


@lru_cache(maxsize=16)
def face_ring_indices(nside: int) -> IntArray:
    """
    RING pixel indices of the 12 HEALPix base faces laid out as square images.

    Parameters
    ----------
    nside
        Resolution of the map the faces are cut from.

    Returns
    -------
        Integer array, shape ``(12, nside, nside)``: entry ``[f, x, y]`` is the RING index of
        the pixel at NESTED face coordinates ``(x, y)`` of base face ``f`` (x runs towards
        the east corner's neighbour along the face's south-east edge, as in ``healpy.pix2xyf``).
        The returned array is read-only and cached.
    """
    import healpy as hp  # heavy: imported where used, so loading the code location stays light

    n = nside
    x, y = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")  # (n, n) each
    faces = np.arange(12)[:, None, None]
    nest = hp.xyf2pix(nside, x[None], y[None], faces, nest=True)  # (12, n, n)
    ring = hp.nest2ring(nside, nest).astype(np.int64)
    ring.setflags(write=False)
    return ring
