"""Spherical-harmonic transforms on HEALPix grids, built on ducc0.

alm arrays use the healpy/ducc0 layout: m-major, ``(0,0), (1,0), ..., (lmax,0), (1,1), ...``,
with ``mmax == lmax``. Leading axes batch independent transforms.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from lensing_core._types import ComplexArray, FloatArray, IntArray
from lensing_core.sky.healpix import nside_from_npix


def default_nthreads() -> int:
    """Threads for ducc0 transforms when the caller gives none: every core this process may use."""
    return max(1, len(os.sched_getaffinity(0)))


def n_alm(lmax: int) -> int:
    """
    Number of alm coefficients for band limit *lmax* with ``mmax == lmax``.

    Examples
    --------
    >>> n_alm(2)
    6
    """
    return (lmax + 1) * (lmax + 2) // 2


def lmax_of(nalm: int) -> int:
    """Band limit of an alm array with *nalm* coefficients (``mmax == lmax``)."""
    lmax = int((np.sqrt(8 * nalm + 1) - 3) / 2)
    if n_alm(lmax) != nalm:
        msg = f"{nalm} coefficients is not a complete alm array with mmax == lmax"
        raise ValueError(msg)
    return lmax


@lru_cache(maxsize=32)
def _truncation_index(lmax_in: int, lmax_out: int) -> IntArray:
    m = np.concatenate([np.full(lmax_out + 1 - mm, mm) for mm in range(lmax_out + 1)])
    ell = np.concatenate([np.arange(mm, lmax_out + 1) for mm in range(lmax_out + 1)])
    index = m * (2 * lmax_in + 1 - m) // 2 + ell
    index.setflags(write=False)
    return index


def truncate_alm(alm: ComplexArray, lmax_out: int) -> ComplexArray:
    """
    Restrict alm to ``ell <= lmax_out``; exact (a pure selection of coefficients).

    Parameters
    ----------
    alm
        Coefficients, shape ``(..., n_alm(lmax_in))``.
    lmax_out
        New band limit, at most ``lmax_in``.

    Returns
    -------
        Coefficients, shape ``(..., n_alm(lmax_out))``; a new array.
    """
    lmax_in = lmax_of(alm.shape[-1])
    if lmax_out > lmax_in:
        msg = f"cannot truncate alm of lmax {lmax_in} to the larger lmax {lmax_out}"
        raise ValueError(msg)
    return alm[..., _truncation_index(lmax_in, lmax_out)]


@lru_cache(maxsize=16)
def _geometry(nside: int) -> dict[str, np.ndarray]:
    import ducc0  # heavy: imported where used, so loading the code location stays light

    return ducc0.healpix.Healpix_Base(nside, "RING").sht_info()


def _ring_slice(nside: int, first_ring: int, last_ring: int) -> dict[str, np.ndarray]:
    geom = _geometry(nside)
    rings = slice(first_ring, last_ring + 1)
    start = geom["ringstart"][rings]
    return {
        "theta": geom["theta"][rings],
        "phi0": geom["phi0"][rings],
        "nphi": geom["nphi"][rings],
        "ringstart": (start - start[0]).astype(np.uint64),
    }


def synthesize_rings(
    alm: ComplexArray,
    nside: int,
    *,
    rings: tuple[int, int] | None = None,
    nthreads: int | None = None,
) -> FloatArray:
    """
    Synthesise real maps from alm on HEALPix rings *rings* (all rings if not given).

    Parameters
    ----------
    alm
        Coefficients, shape ``(n_maps, n_alm(lmax))``, complex128 or complex64 (the maps
        come out in the matching precision).
    nside
        Output resolution.
    rings
        ``(first, last)`` 0-based ring numbers, inclusive; the output holds the pixels of
        these rings only, in RING order starting at the first pixel of ring *first*.
    nthreads
        ducc0 threads; :func:`default_nthreads` if not given.

    Returns
    -------
        Maps, shape ``(n_maps, n_pixels_in_rings)``, float64 or float32.
    """
    import ducc0

    if alm.dtype != np.complex64:
        alm = np.ascontiguousarray(alm, dtype=np.complex128)
    lmax = lmax_of(alm.shape[-1])
    first, last = rings if rings is not None else (0, 4 * nside - 2)
    geom = _ring_slice(nside, first, last)
    out = ducc0.sht.synthesis(
        alm=alm[:, None, :],  # (n_maps, 1 component, n_alm)
        lmax=lmax,
        spin=0,
        nthreads=nthreads or default_nthreads(),
        **geom,
    )
    return out[:, 0, :]


def map2alm(
    maps: FloatArray,
    lmax: int,
    *,
    n_iter: int = 3,
    nthreads: int | None = None,
    dtype: type[np.floating] = np.float64,
) -> ComplexArray:
    """
    Spherical-harmonic analysis of RING maps, as ``healpy.map2alm(use_weights=False)`` does it.

    Parameters
    ----------
    maps
        Maps, shape ``(n_maps, npix)``, RING ordering.
    lmax
        Band limit of the analysis.
    n_iter
        Jacobi iterations refining the quadrature (healpy's ``iter``; 3 is its default).
    nthreads
        ducc0 threads; :func:`default_nthreads` if not given.
    dtype
        Precision of the transforms: ``np.float64`` (complex128 alm) or ``np.float32``
        (complex64 alm, about 2-3 times faster, relative accuracy about 1e-6).

    Returns
    -------
        Coefficients, shape ``(n_maps, n_alm(lmax))``, complex128 or complex64.

    Notes
    -----
    The first estimate is the quadrature ``a = w Y^H m`` with ``w = 4 pi / npix``; each
    iteration adds ``w Y^H (m - Y a)``.
    """
    import ducc0

    maps = np.ascontiguousarray(maps, dtype=dtype)
    nside = nside_from_npix(maps.shape[-1])
    geom = _geometry(nside)
    nthreads = nthreads or default_nthreads()
    weight = 4.0 * np.pi / maps.shape[-1]

    def adjoint(m: FloatArray) -> ComplexArray:
        return ducc0.sht.adjoint_synthesis(
            map=m[:, None, :], lmax=lmax, spin=0, nthreads=nthreads, **geom
        )[:, 0, :]

    alm = adjoint(maps) * maps.dtype.type(weight)
    for _ in range(n_iter):
        residual = maps - synthesize_rings(alm, nside, nthreads=nthreads)
        alm += adjoint(residual) * maps.dtype.type(weight)
    return alm


def alm_to_cl(alm: ComplexArray, alm2: ComplexArray | None = None) -> FloatArray:
    """
    Angular (cross-)power spectrum ``C_l = sum_m Re(a_lm b_lm^*) / (2l + 1)``.

    Parameters
    ----------
    alm, alm2
        Coefficients, shape ``(..., n_alm(lmax))``; *alm2* defaults to *alm*.

    Returns
    -------
        Spectrum, shape ``(..., lmax + 1)``.
    """
    alm2 = alm if alm2 is None else alm2
    lmax = lmax_of(alm.shape[-1])
    m = np.concatenate([np.full(lmax + 1 - mm, mm) for mm in range(lmax + 1)])
    ell = np.concatenate([np.arange(mm, lmax + 1) for mm in range(lmax + 1)])
    power = (alm * alm2.conj()).real * np.where(m == 0, 1.0, 2.0)
    flat = power.reshape(-1, power.shape[-1])  # (n_spectra, n_alm)
    out = np.stack([np.bincount(ell, weights=row, minlength=lmax + 1) for row in flat])
    return out.reshape(*alm.shape[:-1], lmax + 1) / (2 * np.arange(lmax + 1) + 1)
