"""The offline synthetic convergence source: correlated lognormal full-sky kappa maps.

Nothing is downloaded: the maps of one cosmology are correlated lognormal fields drawn with
GLASS, whose auto and cross spectra are the pyccl theory spectra of
:mod:`lensing_core.sims.theory` for a DES-Y3-like stand-in n(z), so the whole platform runs
without the Gower Street simulations.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import TYPE_CHECKING, Literal

import numpy as np

from lensing_core.sims.catalog import FIDUCIAL_PARAMS
from lensing_core.sims.theory import (
    des_y3_like_nz,
    hilbert2011_shift,
    kappa_cls,
    kappa_empty_beam,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from lensing_core._types import FloatArray

logger = logging.getLogger(__name__)

#: Version of the recipe of :func:`synthetic_kappa` (theory spectra, n(z), shifts,
#: GLASS lognormal sampling), recorded in the provenance metadata of the maps. Bump it whenever
#: the same inputs would give other maps. 2: the default shift became ``"hilbert2011_scaled"``.
SYNTHETIC_RECIPE_VERSION = "2"

ShiftChoice = Literal["hilbert2011_scaled", "hilbert2011", "empty_beam"]

#: Names of the lognormal shift recipes accepted by :func:`lognormal_shifts`, the default first.
SHIFT_CHOICES: tuple[str, ...] = ("hilbert2011_scaled", "hilbert2011", "empty_beam")
#: The default recipe: the Hilbert et al. (2011) calibration carried to every cosmology by
#: the empty-beam scaling (see :func:`lognormal_shifts`).
DEFAULT_SHIFT: ShiftChoice = "hilbert2011_scaled"


def lognormal_shifts(
    params: Mapping[str, float],
    nz: tuple[FloatArray, FloatArray],
    *,
    shift: ShiftChoice = DEFAULT_SHIFT,
) -> FloatArray:
    r"""
    Lognormal shift parameter of each tomographic bin.

    Parameters
    ----------
    params
        Cosmological parameters, see :func:`lensing_core.sims.theory.ccl_cosmology`.
    nz
        ``(z, n)`` with ``n`` of shape ``(n_bins, n_z)``.
    shift
        ``"hilbert2011_scaled"`` (the default): the Hilbert et al. (2011) fit
        times the ratio of the empty-beam convergence at *params* to the one at
        the fiducial cosmology (:data:`~lensing_core.sims.catalog.FIDUCIAL_PARAMS`),
        :math:`\lambda_i = \lambda^{\rm H}_i \, \kappa^{\rm eb}_i(p) /
        \kappa^{\rm eb}_i(p_{\rm fid})`.
        ``"hilbert2011"``: the Hilbert et al. (2011) fit at each bin's mean
        redshift (:func:`~lensing_core.sims.theory.hilbert2011_shift`), the same
        for every cosmology (the default of recipe version 1).
        ``"empty_beam"``: the magnitude of the empty-beam convergence
        (:func:`~lensing_core.sims.theory.kappa_empty_beam`).

    Returns
    -------
        Shifts :math:`\lambda_i > 0`, shape ``(n_bins,)``: map *i* is bounded below
        by :math:`-\lambda_i`.

    Raises
    ------
    ValueError
        If *shift* is not one of :data:`SHIFT_CHOICES`.

    Notes
    -----
    The skewness of a lognormal map is :math:`S_3 = \langle\kappa^3\rangle /
    \langle\kappa^2\rangle^2 \approx 3 / \lambda` to leading order, and the
    smallest physical convergence is minus the empty-beam value
    :math:`\kappa^{\rm eb} \propto \Omega_m`.

    The Hilbert shift is calibrated on ray-traced convergence of one cosmology
    and sits at 0.54-0.68 times the empty-beam value at the fiducial for these
    bins. Alone it is the same for every cosmology, so the maps' skewness
    carries no :math:`\Omega_m` information (perturbation theory has
    :math:`S_3 \propto 1/\Omega_m`), and at low :math:`\Omega_m` it exceeds
    the empty-beam value, letting kappa go below its physical minimum
    (:math:`\Omega_m = 0.15`, bins 1-2: 0.0055 and 0.0109 against 0.0043 and
    0.0098).

    The default keeps the Hilbert calibration at the fiducial and carries it
    to other cosmologies with the empty-beam scaling: :math:`S_3` then scales
    like :math:`1/\kappa^{\rm eb} \sim 1/\Omega_m`, and
    :math:`\lambda_i / \kappa^{\rm eb}_i` is the fiducial ratio (< 0.7) for
    every cosmology, so :math:`\kappa \ge -\lambda > -\kappa^{\rm eb}`
    everywhere. The empty-beam shift also scales with :math:`\Omega_m` but
    gives too little skewness compared with simulations.
    """
    if shift == "hilbert2011_scaled":
        fiducial = kappa_empty_beam(FIDUCIAL_PARAMS, nz)
        return hilbert2011_shift(nz) * kappa_empty_beam(params, nz) / fiducial
    if shift == "hilbert2011":
        return hilbert2011_shift(nz)
    if shift == "empty_beam":
        return kappa_empty_beam(params, nz)
    msg = f"unknown lognormal shift {shift!r}; expected one of {SHIFT_CHOICES}"
    raise ValueError(msg)


def synthetic_kappa(
    params: Mapping[str, float],
    *,
    nside: int,
    rng: np.random.Generator,
    lmax: int | None = None,
    nz: tuple[FloatArray, FloatArray] | None = None,
    shift: ShiftChoice = DEFAULT_SHIFT,
) -> FloatArray:
    r"""
    Correlated lognormal full-sky convergence maps, one per tomographic bin.

    Parameters
    ----------
    params
        Cosmological parameters, see :func:`lensing_core.sims.theory.ccl_cosmology`.
    nside
        HEALPix resolution of the output maps.
    rng
        Source of randomness; the same parameters, nside, lmax and generator
        state give the same bytes.
    lmax
        Band limit of the Gaussian fields and of the target spectra;
        ``2 * nside`` if not given.
    nz
        ``(z, n)`` with ``n`` of shape ``(n_bins, n_z)``;
        :func:`~lensing_core.sims.theory.des_y3_like_nz` if not given.
    shift
        Lognormal shift recipe, see :func:`lognormal_shifts`; the default
        ``"hilbert2011_scaled"`` makes the skewness scale like
        :math:`1/\Omega_m` and keeps the maps above minus the empty-beam value.

    Returns
    -------
        Convergence maps, float64, shape ``(n_bins, 12 * nside**2)``, bin index
        first, HEALPix RING ordering, zero mean in expectation, with auto and
        cross spectra ``kappa_cls(params, nz, lmax)``.

    Notes
    -----
    The maps are :math:`\kappa_i = \lambda_i [\exp(g_i - \sigma_i^2/2) - 1]` for
    correlated Gaussian fields :math:`g_i` (GLASS: ``glass.grf.Lognormal``).
    The Gaussian spectra are solved with ``glass.solve_gaussian_spectra``
    (Tessore et al. 2023, arXiv:2302.01942) so that the lognormal fields have
    the target spectra, projected onto the nearest positive semi-definite
    matrices per ell (``glass.regularized_spectra``) when needed, and sampled
    with ``glass.generate``. The Gaussian dipole is zero (the theory has
    :math:`C_0 = C_1 = 0`). No pixel window is applied (``healpy.pixwin``
    needs the network).

    Raises
    ------
    ValueError
        If *nside* is not a power of two, *lmax* is outside ``[2, 3 nside - 1]``
        or *shift* is not one of :data:`SHIFT_CHOICES`.
    """
    if nside < 1 or nside & (nside - 1):
        msg = f"nside must be a positive power of two, got {nside}"
        raise ValueError(msg)
    if lmax is None:
        lmax = 2 * nside
    if not 2 <= lmax <= 3 * nside - 1:
        msg = f"lmax must lie in [2, 3 * nside - 1 = {3 * nside - 1}], got {lmax}"
        raise ValueError(msg)
    import glass  # heavy: imported where used, so loading the code location stays light

    if nz is None:
        nz = des_y3_like_nz()
    t0 = time.perf_counter()
    cls = kappa_cls(params, nz, lmax)
    n_bins = cls.shape[0]
    shifts = lognormal_shifts(params, nz, shift=shift)
    t1 = time.perf_counter()

    fields = [glass.grf.Lognormal(float(s)) for s in shifts]
    # GLASS standard order: (0,0), (1,1), (1,0), (2,2), (2,1), (2,0), ...
    # The solver divides by the target at every ell > 0, so it is given a
    # dipole equal to the quadrupole; the Gaussian dipole is then removed,
    # leaving only the tiny dipole that the lognormal transform couples in.
    target = cls.copy()
    target[:, :, 1] = target[:, :, 2]
    spectra = [target[i, j] for i, j in glass.spectra_indices(n_bins)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gls = glass.solve_gaussian_spectra(fields, spectra)
    for warning in caught:
        logger.warning("glass.solve_gaussian_spectra: %s", warning.message)
    for gl in gls:
        gl[1] = 0.0
    if not glass.check_posdef_spectra(gls):
        logger.debug("Gaussian spectra are not positive semi-definite: regularising")
        gls = glass.regularized_spectra(gls)
    t2 = time.perf_counter()

    maps = np.empty((n_bins, 12 * nside * nside), dtype=np.float64)
    for i, kappa in enumerate(glass.generate(fields, gls, nside, rng=rng)):
        maps[i] = kappa
    t3 = time.perf_counter()
    logger.debug(
        "synthetic_kappa: nside %d lmax %d: spectra %.2f s, Gaussian spectra %.2f s, maps %.2f s",
        nside,
        lmax,
        t1 - t0,
        t2 - t1,
        t3 - t2,
    )
    return maps
