"""Shape noise for convergence maps.

The noise is white: its convergence power per tomographic bin is ``N_ell = sigma_e**2 / n_eff``
in steradians, with the numbers of the survey a noise level is named after
(:mod:`lensing_core.sky.surveys`). Realisations are drawn in harmonic space, several per (sim,
noise level) (realisation ``r = 0, 1, ...``, each with its own seed), in ell-major order: the
noise at a smaller band limit is the truncation of the noise at a larger one, so the tiles of
every lmax share the same realisations.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from lensing_core._types import ComplexArray, FloatArray, IntArray
from lensing_core.sky.harmonics import n_alm
from lensing_core.sky.surveys import SURVEYS
from lensing_core.units import healpix_pixel_area_sr, per_arcmin2_to_per_sr

#: Noise-level names: no noise, then one per survey of :data:`~lensing_core.sky.surveys.SURVEYS`.
NOISE_LEVELS: tuple[str, ...] = ("noiseless", "des_y3", "lsst_y10")
#: Shape-noise conventions, see :func:`noise_power`.
NOISE_CONVENTIONS: tuple[str, ...] = ("per_component", "legacy")
N_BINS = 4
# Stable integer codes for seeding: adding a level must not change existing realisations.
_NOISE_SEED_CODE = {"noiseless": 0, "des_y3": 1, "lsst_y10": 2}


def check_noise_level(noise_level: str) -> None:
    """Raise ``ValueError`` for a noise level that is not one of :data:`NOISE_LEVELS`."""
    if noise_level not in NOISE_LEVELS:
        msg = f"unknown noise level {noise_level!r}; expected one of {NOISE_LEVELS}"
        raise ValueError(msg)


def noise_power(noise_level: str, *, convention: str = "per_component") -> FloatArray:
    """
    White shape-noise power of the convergence, per tomographic bin.

    Parameters
    ----------
    noise_level
        One of :data:`NOISE_LEVELS`.
    convention
        ``"per_component"``: ``N_ell = sigma_e**2 / n_eff`` with sigma_e per ellipticity
        component (correct). ``"legacy"``: ``sigma_e**2 / (2 n_eff)``, half the variance, as the
        earlier published dataset had it.

    Returns
    -------
        ``N_ell`` in steradians, shape ``(4,)``; zeros for ``"noiseless"``.

    Notes
    -----
    The convergence estimated from shear has the noise of one shear component:
    each galaxy contributes variance ``sigma_e**2`` per component, so a pixel of area
    ``A`` holding ``n_eff A`` galaxies has variance ``sigma_e**2 / (n_eff A)``.
    """
    check_noise_level(noise_level)
    if convention not in NOISE_CONVENTIONS:
        msg = f"unknown noise convention {convention!r}; expected one of {NOISE_CONVENTIONS}"
        raise ValueError(msg)
    if noise_level == "noiseless":
        return np.zeros(N_BINS)
    survey = SURVEYS[noise_level]
    n_eff_sr = np.array([per_arcmin2_to_per_sr(n) for n in survey.n_eff_arcmin2])
    power = np.asarray(survey.sigma_e) ** 2 / n_eff_sr
    return power / 2.0 if convention == "legacy" else power


def pixel_noise_std(
    noise_level: str, nside: int, *, convention: str = "per_component"
) -> FloatArray:
    """
    Per-bin standard deviation of white convergence noise in HEALPix pixels.

    Parameters
    ----------
    noise_level
        One of :data:`NOISE_LEVELS`.
    nside
        Pixel resolution.
    convention
        See :func:`noise_power`.

    Returns
    -------
        ``sigma_e / sqrt(n_eff A_pix)`` per bin (``/ sqrt(2 n_eff A_pix)`` for ``"legacy"``),
        shape ``(4,)``.
    """
    return np.sqrt(noise_power(noise_level, convention=convention) / healpix_pixel_area_sr(nside))


def noise_rng(seed: int, noise_level: str, realization: int = 0) -> np.random.Generator:
    """
    Generator of noise realisation *realization* of (*seed*, *noise_level*), e.g. seed = sim id.

    Realisation 0 is seeded ``[seed, level code]``, the one realisation of tiles made before
    several were drawn (so those tiles are its realisation 0); realisation ``r >= 1`` is
    seeded ``[seed, level code, r]``. Every (seed, level, r) has its own stream.
    """
    check_noise_level(noise_level)
    if realization < 0:
        raise ValueError(f"noise realization must be >= 0, got {realization}")
    key = [int(seed), _NOISE_SEED_CODE[noise_level]]
    return np.random.default_rng([*key, int(realization)] if realization else key)


@lru_cache(maxsize=16)
def _ell_major_positions(lmax: int) -> tuple[IntArray, IntArray]:
    # In the ell-major draw, block ell starts at ell**2 and holds a_l0, then Re/Im of a_lm.
    m = np.concatenate([np.full(lmax + 1 - mm, mm) for mm in range(lmax + 1)])
    ell = np.concatenate([np.arange(mm, lmax + 1) for mm in range(lmax + 1)])
    re = ell**2 + np.maximum(2 * m - 1, 0)
    im = ell**2 + 2 * m
    return re, im


def white_noise_alm(power_sr: FloatArray, lmax: int, *, rng: np.random.Generator) -> ComplexArray:
    """
    Gaussian white noise in harmonic space, for several maps at once.

    Parameters
    ----------
    power_sr
        Flat noise power ``N_ell`` per map, in steradians, shape ``(n_maps,)``.
    lmax
        Band limit.
    rng
        Source of randomness; consumed in ell-major order, so the draw for a smaller lmax is
        exactly the truncation of the draw for a larger one.

    Returns
    -------
        Coefficients, shape ``(n_maps, n_alm(lmax))``, complex128, with
        ``<|a_lm|^2> = N_ell``.
    """
    power_sr = np.asarray(power_sr, dtype=np.float64)
    z = rng.standard_normal(((lmax + 1) ** 2, power_sr.size))  # (ell-major reals, n_maps)
    re, im = _ell_major_positions(lmax)
    m0 = np.zeros(n_alm(lmax), dtype=bool)
    m0[: lmax + 1] = True
    amp = np.sqrt(power_sr)[:, None] * np.where(m0, 1.0, np.sqrt(0.5))  # (n_maps, n_alm)
    alm = z[re].T + 1j * np.where(m0, 0.0, z[im].T)
    return alm * amp
