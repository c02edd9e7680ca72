"""Theory inputs of the synthetic convergence source: n(z), cosmology and spectra.

A flat pyccl cosmology (Eisenstein-Hu transfer, halofit) is built from a simulation's
parameters and gives the Limber convergence spectra of tomographic source bins (the four bins
of a parametric DES-Y3-like stand-in n(z) by default). The lognormal shifts of the synthetic
maps come from here too: the empty-beam convergence (the physical minimum of kappa) and the
Hilbert et al. (2011) fit at each bin's mean redshift.
"""

from __future__ import annotations

import logging
import math
import time
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pyccl as ccl

    from lensing_core._types import FloatArray

logger = logging.getLogger(__name__)

#: Mean redshifts of the four DES-Y3-like source bins (the targets of :func:`des_y3_like_nz`).
DES_Y3_LIKE_MEAN_Z: tuple[float, ...] = (0.33, 0.52, 0.74, 0.94)

# The stand-in n(z) is built like a photometric survey's: a smooth parent
# distribution n(z) ~ z^2 exp[-(z/z0)^beta] is cut into photometric-redshift
# bins with DES-Y3-like edges and a Gaussian photo-z scatter
# sigma_z = SCATTER (1 + z).  Such bins overlap, which pulls their means
# together; a small shift per bin (the same kind of nuisance shift DES fits)
# then puts the means exactly at DES_Y3_LIKE_MEAN_Z.  The shifts were solved
# once on a fine grid (0 <= z <= 4, 40001 points) for these constants.
_PHOTO_Z_EDGES: tuple[float, ...] = (0.0, 0.358, 0.631, 0.872, 2.0)
_PARENT_Z0 = 0.72
_PARENT_BETA = 3.0
_PHOTO_Z_SCATTER = 0.075
_BIN_SHIFTS: tuple[float, ...] = (0.0043, -0.0161, 0.0109, 0.0001)

_DEFAULT_Z_MAX = 3.0
_DEFAULT_N_Z = 601

#: Speed of light in km/s (so that H0 / c is in 1/Mpc with H0 in km/s/Mpc).
SPEED_OF_LIGHT_KM_S = 299_792.458

# Sparse ell grid for pyccl: every integer up to _ELL_DENSE_MAX, then
# _N_ELL_LOG log-spaced values up to lmax; a cubic spline in log-log fills in.
_ELL_DENSE_MAX = 16
_N_ELL_LOG = 64

# Samples of the lensing kernel in comoving distance (pyccl's default for
# WeakLensingTracer).
_N_CHI_KERNEL = 256


def des_y3_like_nz(z: FloatArray | None = None) -> tuple[FloatArray, FloatArray]:
    r"""
    DES-Y3-like stand-in source redshift distributions for four tomographic bins.

    Parameters
    ----------
    z
        Redshift grid, 1-d, increasing, starting at or above 0. If not given,
        601 points evenly spaced on ``0 <= z <= 3``.

    Returns
    -------
    z
        The redshift grid, shape ``(n_z,)``.
    n
        The distributions, shape ``(4, n_z)``, bin index first, each row
        normalised to unit integral over *z* (trapezoid rule), in units of
        1 / redshift.

    Notes
    -----
    Bin *i* is :math:`n_i(z) \propto p(z - \Delta_i)\, w_i(z - \Delta_i)`, with the
    parent :math:`p(z) = z^2 \exp[-(z/0.72)^3]` and the photo-z selection

    .. math::

       w_i(z) = \tfrac12\left[\operatorname{erf}\frac{e_{i+1} - z}{\sqrt2\,\sigma(z)}
                - \operatorname{erf}\frac{e_i - z}{\sqrt2\,\sigma(z)}\right],
       \qquad \sigma(z) = 0.075\,(1 + z),

    for photo-z edges ``e = (0, 0.358, 0.631, 0.872, 2.0)``, close to the DES Y3
    source-bin edges (Myles et al. 2021). The small shifts :math:`\Delta_i`
    put the mean redshifts at :data:`DES_Y3_LIKE_MEAN_Z` (0.33, 0.52, 0.74,
    0.94). The standard deviations are about 0.12, 0.13, 0.13 and 0.15. It is
    a stand-in, not the DES Y3 n(z): use the ``NZ_SOURCE`` HDU of the DES 2pt
    file where the real distributions are wanted.

    Examples
    --------
    >>> z, n = des_y3_like_nz()
    >>> n.shape
    (4, 601)
    """
    # heavy: imported where used, so loading the code location stays light
    from scipy.special import erf

    if z is None:
        z = np.linspace(0.0, _DEFAULT_Z_MAX, _DEFAULT_N_Z)
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 1 or z.size < 2 or np.any(np.diff(z) <= 0) or z[0] < 0:
        msg = f"expected an increasing 1-d redshift grid starting at z >= 0, got shape {z.shape}"
        raise ValueError(msg)

    n = np.empty((len(_BIN_SHIFTS), z.size))
    for i, shift in enumerate(_BIN_SHIFTS):
        zt = np.clip(z - shift, 0.0, None)
        parent = zt**2 * np.exp(-((zt / _PARENT_Z0) ** _PARENT_BETA))
        sigma = math.sqrt(2.0) * _PHOTO_Z_SCATTER * (1.0 + zt)
        lo, hi = _PHOTO_Z_EDGES[i], _PHOTO_Z_EDGES[i + 1]
        n[i] = parent * 0.5 * (erf((hi - zt) / sigma) - erf((lo - zt) / sigma))
    norm = np.asarray(np.trapezoid(n, z, axis=1))
    if np.any(norm <= 0):
        msg = f"the redshift grid [{z[0]}, {z[-1]}] misses a source bin (integrals {norm})"
        raise ValueError(msg)
    return z, n / norm[:, None]


def _param(params: Mapping[str, float], key: str) -> float:
    try:
        return float(params[key])
    except KeyError:
        msg = f"cosmological parameters lack {key!r} (got keys {sorted(params)})"
        raise KeyError(msg) from None


def ccl_cosmology(params: Mapping[str, float]) -> ccl.Cosmology:
    """
    Build a pyccl cosmology (Eisenstein-Hu transfer, halofit) from simulation parameters.

    Parameters
    ----------
    params
        Mapping with ``Omega_m`` (total matter, massive neutrinos included),
        ``sigma_8``, ``w`` (constant equation of state, ``wa = 0``), ``h``,
        ``n_s``, ``m_nu`` (sum of the neutrino masses in eV) and either
        ``Omega_b`` or ``Omega_bh2``. Other keys (``S8`` ...) are ignored;
        ``sigma_8`` may be replaced by ``S8``.

    Returns
    -------
        A flat :class:`pyccl.Cosmology` whose ``cosmo["Omega_m"]`` equals
        ``params["Omega_m"]``.

    Raises
    ------
    KeyError
        If a required parameter is missing.
    ValueError
        If the parameters leave no room for cold dark matter.

    Notes
    -----
    pyccl defines ``Omega_m = Omega_c + Omega_b + Omega_nu_mass``, where
    ``Omega_nu_mass`` is the density today of the massive neutrinos, computed by
    pyccl from the masses, ``h``, ``T_CMB`` and ``T_ncdm`` (independent of
    ``Omega_c``). The masses are three degenerate states (``mass_split="equal"``,
    the usual N-body choice), ``Neff = 3.044``. So ``Omega_nu_mass`` is read
    from a first pyccl cosmology and ``Omega_c = Omega_m - Omega_b -
    Omega_nu_mass`` is set in the second. Building a pyccl cosmology computes
    nothing until a distance or power spectrum is asked for; what it computes is kept
    in the object, and the last few cosmologies are kept per process, so the maps of a
    sim, its checks and the fiducial's lognormal shifts reuse distances and spectra.
    """
    key = tuple(sorted((k, float(v)) for k, v in params.items() if k in _COSMOLOGY_KEYS))
    return _cosmology_of(key)


#: The parameters :func:`ccl_cosmology` reads.
_COSMOLOGY_KEYS = frozenset(
    ("Omega_m", "h", "sigma_8", "S8", "Omega_b", "Omega_bh2", "n_s", "m_nu", "w")
)


@lru_cache(maxsize=8)
def _cosmology_of(key: tuple[tuple[str, float], ...]) -> ccl.Cosmology:
    import pyccl as ccl

    params = dict(key)
    omega_m = _param(params, "Omega_m")
    h = _param(params, "h")
    if "sigma_8" in params:
        sigma8 = _param(params, "sigma_8")
    else:
        sigma8 = _param(params, "S8") / math.sqrt(omega_m / 0.3)
    omega_b = (
        _param(params, "Omega_b") if "Omega_b" in params else _param(params, "Omega_bh2") / h**2
    )
    common = {
        "Omega_b": omega_b,
        "h": h,
        "n_s": _param(params, "n_s"),
        "sigma8": sigma8,
        "m_nu": _param(params, "m_nu"),
        "mass_split": "equal",
        "w0": _param(params, "w"),
        "wa": 0.0,
        "transfer_function": "eisenstein_hu",
        "matter_power_spectrum": "halofit",
    }
    probe = ccl.Cosmology(Omega_c=max(omega_m - omega_b, 1e-3), **common)
    omega_nu = float(probe["Omega_nu_mass"])
    omega_c = omega_m - omega_b - omega_nu
    if omega_c <= 0:
        msg = (
            f"Omega_m={omega_m} leaves no cold dark matter after Omega_b={omega_b} "
            f"and Omega_nu={omega_nu:.5f}"
        )
        raise ValueError(msg)
    return ccl.Cosmology(Omega_c=omega_c, **common)


def _check_nz(nz: tuple[FloatArray, FloatArray]) -> tuple[FloatArray, FloatArray]:
    z, n = (np.asarray(a, dtype=np.float64) for a in nz)
    if z.ndim != 1 or n.ndim != 2 or n.shape[1] != z.size:
        msg = f"expected nz = (z (n_z,), n (n_bins, n_z)), got shapes {z.shape} and {n.shape}"
        raise ValueError(msg)
    return z, n


def convergence_tracers(
    cosmo: ccl.Cosmology, nz: tuple[FloatArray, FloatArray]
) -> list[ccl.Tracer]:
    r"""
    One pyccl convergence tracer per tomographic bin.

    Parameters
    ----------
    cosmo
        The cosmology.
    nz
        ``(z, n)`` with ``z`` of shape ``(n_z,)`` and ``n`` of shape
        ``(n_bins, n_z)`` (any normalisation).

    Returns
    -------
        ``n_bins`` tracers whose spectra are convergence (spin-0) spectra.

    Notes
    -----
    ``pyccl.WeakLensingTracer`` is the *shear* tracer: its ell prefactor is
    :math:`\sqrt{(\ell+2)!/(\ell-2)!}/(\ell+\tfrac12)^2` (``der_angles=2``).
    The convergence is :math:`\kappa = \tfrac12 \nabla^2 \psi` and takes
    :math:`\ell(\ell+1)/(\ell+\tfrac12)^2` (``der_angles=1``, as for
    ``pyccl.CMBLensingTracer``), on the same lensing kernel, so that
    :math:`C^{\gamma}_\ell = \frac{(\ell+2)(\ell-1)}{\ell(\ell+1)} C^{\kappa}_\ell`.
    """
    import pyccl as ccl

    z, n = _check_nz(nz)
    tracers = []
    for n_i in n:
        kernel = ccl.get_lensing_kernel(cosmo, dndz=(z, n_i), n_chi=_N_CHI_KERNEL)
        tracer = ccl.Tracer()
        tracer.add_tracer(cosmo, kernel=kernel, der_bessel=-1, der_angles=1)
        tracers.append(tracer)
    return tracers


def _ell_grid(lmax: int) -> FloatArray:
    dense = np.arange(2, min(_ELL_DENSE_MAX, lmax) + 1, dtype=np.float64)
    if lmax <= _ELL_DENSE_MAX:
        return dense
    sparse = np.geomspace(_ELL_DENSE_MAX, lmax, _N_ELL_LOG)
    return np.unique(np.concatenate([dense, sparse]))


def kappa_cls(
    params: Mapping[str, float],
    nz: tuple[FloatArray, FloatArray],
    lmax: int,
) -> FloatArray:
    r"""
    Tomographic convergence angular power spectra at every integer ell up to *lmax*.

    Parameters
    ----------
    params
        Cosmological parameters, see :func:`ccl_cosmology`.
    nz
        ``(z, n)`` with ``n`` of shape ``(n_bins, n_z)``, e.g. :func:`des_y3_like_nz`.
    lmax
        Largest multipole, at least 2.

    Returns
    -------
        ``cls[i, j, ell]``, shape ``(n_bins, n_bins, lmax + 1)``, symmetric in
        ``i, j``, dimensionless (convergence is dimensionless; :math:`C_\ell` is per
        steradian), with ``cls[..., 0] = cls[..., 1] = 0``.

    Notes
    -----
    Limber spectra from pyccl (halofit non-linear matter power) with the
    convergence tracers of :func:`convergence_tracers`, evaluated at every
    integer ell up to 16 and 64 log-spaced ells above, then interpolated to
    every integer ell by a cubic spline in :math:`(\ln\ell, \ln C_\ell)`.
    No intrinsic alignments, no baryonic feedback, no shape noise.
    """
    if lmax < 2:
        msg = f"lmax must be at least 2, got {lmax}"
        raise ValueError(msg)
    import pyccl as ccl
    from scipy.interpolate import CubicSpline

    t0 = time.perf_counter()
    cosmo = ccl_cosmology(params)
    tracers = convergence_tracers(cosmo, nz)
    ells = _ell_grid(lmax)
    ell_out = np.arange(2, lmax + 1, dtype=np.float64)
    n_bins = len(tracers)
    cls = np.zeros((n_bins, n_bins, lmax + 1))
    for i in range(n_bins):
        for j in range(i + 1):
            cl = ccl.angular_cl(cosmo, tracers[i], tracers[j], ells)
            if np.any(cl <= 0):
                msg = f"non-positive convergence spectrum for bins ({i}, {j}): {cl.min()}"
                raise ValueError(msg)
            spline = CubicSpline(np.log(ells), np.log(cl))
            cls[i, j, 2:] = cls[j, i, 2:] = np.exp(spline(np.log(ell_out)))
    logger.debug(
        "kappa_cls: %d bins, lmax %d, %d ells in %.3f s",
        n_bins,
        lmax,
        ells.size,
        time.perf_counter() - t0,
    )
    return cls


def kappa_empty_beam(params: Mapping[str, float], nz: tuple[FloatArray, FloatArray]) -> FloatArray:
    r"""
    Magnitude of the empty-beam convergence of each tomographic bin.

    Parameters
    ----------
    params
        Cosmological parameters, see :func:`ccl_cosmology`.
    nz
        ``(z, n)`` with ``n`` of shape ``(n_bins, n_z)`` (any normalisation).

    Returns
    -------
        :math:`|\kappa_{\rm empty}|` per bin, shape ``(n_bins,)``, positive,
        dimensionless. The convergence along a line of sight with no matter
        (:math:`\delta = -1` everywhere) is :math:`-|\kappa_{\rm empty}|`: the
        smallest value kappa can take.

    Notes
    -----
    .. math::

       |\kappa_{\rm empty}| = \frac32 \Omega_m \left(\frac{H_0}{c}\right)^2
           \int dz_s\, n(z_s) \int_0^{\chi_s} d\chi\, (1 + z)\,
           \frac{\chi (\chi_s - \chi)}{\chi_s},

    with comoving distances from pyccl, computed on a fine redshift grid
    (n(z) linearly interpolated). Used as a lognormal shift it makes the
    shift scale with :math:`\Omega_m`, like the physical minimum of kappa.
    """
    z, n = _check_nz(nz)
    cosmo = ccl_cosmology(params)
    # a fine grid keeps the double integral accurate for coarse input grids
    zf = np.linspace(0.0, z[-1], 2049)
    nf = np.stack([np.interp(zf, z, n_i, left=0.0, right=0.0) for n_i in n])
    chi = cosmo.comoving_radial_distance(1.0 / (1.0 + zf))  # Mpc
    # inner integral for every source distance chi_s = chi[k]:
    # int_0^chi_s (1+z) chi dchi - (1/chi_s) int_0^chi_s (1+z) chi^2 dchi
    i1 = _cumtrapz((1.0 + zf) * chi, chi)
    i2 = _cumtrapz((1.0 + zf) * chi**2, chi)
    inner = np.zeros_like(chi)
    inner[1:] = i1[1:] - i2[1:] / chi[1:]
    prefactor = 1.5 * cosmo["Omega_m"] * (cosmo["h"] * 100.0 / SPEED_OF_LIGHT_KM_S) ** 2
    weights = np.trapezoid(nf, zf, axis=1)
    return prefactor * np.trapezoid(nf * inner, zf, axis=1) / weights


def _cumtrapz(y: FloatArray, x: FloatArray) -> FloatArray:
    out = np.zeros_like(y)
    out[1:] = np.cumsum(0.5 * (y[1:] + y[:-1]) * np.diff(x))
    return out


def hilbert2011_shift(nz: tuple[FloatArray, FloatArray]) -> FloatArray:
    r"""
    Lognormal shift of Hilbert et al. (2011) at the mean redshift of each bin.

    Parameters
    ----------
    nz
        ``(z, n)`` with ``n`` of shape ``(n_bins, n_z)`` (any normalisation).

    Returns
    -------
        Shift :math:`\lambda` per bin, shape ``(n_bins,)``, dimensionless.

    Notes
    -----
    The fitting formula
    :math:`\lambda(z) = 0.008 z + 0.029 z^2 - 0.0079 z^3 + 0.00065 z^4`
    (Hilbert, Hartlap & Schneider 2011, A&A 536, A85; ``glass.lognormal_shift_hilbert2011``)
    was calibrated on single source planes of the Millennium simulation and
    does not depend on cosmology.
    """
    z, n = _check_nz(nz)
    mean_z = np.asarray(np.trapezoid(n * z, z, axis=1) / np.trapezoid(n, z, axis=1), dtype=float)
    return mean_z * (8e-3 + mean_z * (2.9e-2 + mean_z * (-7.9e-3 + mean_z * 6.5e-4)))
