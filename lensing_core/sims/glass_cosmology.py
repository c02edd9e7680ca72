"""A pyccl-backed cosmology object for GLASS (the ``cosmology.api`` protocol).

GLASS's lensing and shell code (:class:`glass.MultiPlaneConvergence`,
:func:`glass.multi_plane_weights`, :class:`glass.DistanceWeight` ...) takes any
object that follows the ``cosmology.api`` protocol (``glass/cosmology.py``). No
installed package provides one: ``cosmology.api`` itself is not installed (GLASS
uses it for type checking only), ``cosmology-compat-camb`` is absent, and
astropy's cosmologies return unit-carrying quantities under other names. This
module wraps a :class:`pyccl.Cosmology` instead, so that the ray tracing uses the
same background as the pyccl theory spectra it is validated against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyccl as ccl

from lensing_core.sims.theory import SPEED_OF_LIGHT_KM_S, ccl_cosmology

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from numpy.typing import ArrayLike

    from lensing_core._types import FloatArray

# |Omega_k| below this counts as flat (pyccl stores exactly 0 for a flat model).
_FLAT_TOLERANCE = 1e-12


def _scale_factor(z: ArrayLike) -> FloatArray:
    z = np.asarray(z, dtype=np.float64)
    if np.any(z < 0) or not np.all(np.isfinite(z)):
        msg = f"redshifts must be finite and non-negative, got {z}"
        raise ValueError(msg)
    return 1.0 / (1.0 + z)


@dataclass(frozen=True)
class CCLGlassCosmology:
    r"""
    A flat :class:`pyccl.Cosmology` seen through the ``cosmology.api`` protocol.

    Parameters
    ----------
    cosmo
        A flat pyccl cosmology (``Omega_k = 0``); any dark-energy equation of
        state, massive neutrinos and radiation as pyccl models them.

    Notes
    -----
    Distances are in Mpc (not Mpc/h), as pyccl gives them, and the Hubble
    distance :math:`c / H_0` is in Mpc too, so that GLASS's dimensionless ratios
    ``distance / hubble_distance`` come out right. In a flat universe the
    transverse comoving distance between redshifts :math:`z_1 < z_2` is
    :math:`\chi(z_2) - \chi(z_1)` exactly; a curved cosmology is rejected
    rather than approximated.
    """

    cosmo: ccl.Cosmology

    def __post_init__(self) -> None:
        omega_k = float(self.cosmo["Omega_k"])
        if abs(omega_k) > _FLAT_TOLERANCE:
            msg = f"CCLGlassCosmology needs a flat cosmology, got Omega_k = {omega_k}"
            raise ValueError(msg)

    @property
    def h(self) -> float:
        """Dimensionless Hubble parameter, H0 = 100 h km/s/Mpc."""
        return float(self.cosmo["h"])

    little_h = h

    @property
    def H0(self) -> float:
        """Hubble constant in km/s/Mpc."""
        return 100.0 * self.h

    @property
    def hubble_distance(self) -> float:
        """Hubble distance :math:`c / H_0` in Mpc."""
        return SPEED_OF_LIGHT_KM_S / self.H0

    @property
    def Omega_m0(self) -> float:
        """Matter density today (cold dark matter, baryons and massive neutrinos)."""
        return float(self.cosmo["Omega_m"])

    @property
    def critical_density0(self) -> float:
        """Critical density today in solar masses per Mpc^3."""
        return float(ccl.physical_constants.RHO_CRITICAL * self.h**2)

    def H_over_H0(self, z: ArrayLike, /) -> FloatArray:
        """Expansion rate :math:`E(z) = H(z) / H_0`, same shape as *z*."""
        return self._apply(ccl.h_over_h0, z)

    def Omega_m(self, z: ArrayLike, /) -> FloatArray:
        """Matter density parameter at redshift *z*, same shape as *z*."""
        a = _scale_factor(z)
        return np.reshape(ccl.omega_x(self.cosmo, a.ravel(), "matter"), a.shape)

    def comoving_distance(self, z1: ArrayLike, z2: ArrayLike | None = None, /) -> FloatArray:
        """
        Line-of-sight comoving distance in Mpc.

        Parameters
        ----------
        z1, z2
            With one argument, the distance from us to redshift *z1*; with two,
            the distance from *z1* to *z2* (negative if *z2* < *z1*). The
            arguments broadcast against each other.

        Returns
        -------
            Distances in Mpc, with the broadcast shape of the arguments.
        """
        if z2 is None:
            return self._chi(z1)
        return self._chi(z2) - self._chi(z1)

    def transverse_comoving_distance(
        self, z1: ArrayLike, z2: ArrayLike | None = None, /
    ) -> FloatArray:
        """Transverse comoving distance in Mpc; equal to :meth:`comoving_distance` (flat)."""
        return self.comoving_distance(z1, z2)

    def inv_comoving_distance(self, z: ArrayLike, /) -> FloatArray:
        """Inverse comoving distance in 1/Mpc."""
        return 1.0 / self._chi(z)

    def _chi(self, z: ArrayLike) -> FloatArray:
        return self._apply(ccl.comoving_radial_distance, z)

    def _apply(
        self, func: Callable[[ccl.Cosmology, FloatArray], FloatArray], z: ArrayLike
    ) -> FloatArray:
        a = _scale_factor(z)
        # pyccl takes floats or 1-d arrays: flatten and restore the caller's shape
        values = func(self.cosmo, a.ravel())
        return np.reshape(np.asarray(values, dtype=np.float64), a.shape)


def glass_cosmology(params: Mapping[str, float]) -> CCLGlassCosmology:
    """
    GLASS cosmology of a simulation from its parameter mapping.

    Parameters
    ----------
    params
        Mapping with ``Omega_m``, ``sigma_8`` (or ``S8``), ``w``, ``h``, ``n_s``,
        ``m_nu`` and ``Omega_b`` or ``Omega_bh2``, as in a catalog entry; see
        :func:`lensing_core.sims.theory.ccl_cosmology`.

    Returns
    -------
        A :class:`CCLGlassCosmology` of the flat wCDM model (``wa = 0``) with
        massive neutrinos that the theory spectra use.
    """
    return CCLGlassCosmology(ccl_cosmology(params))
