"""Fisher forecast of band powers: Gaussian covariance, Fisher matrix, priors, FoM.

The data are the band powers of one tile (:class:`lensing_core.sky.power.TilePowerEstimator`):
the 10 auto and cross spectra of the 4 bins in linear ell bands. Their covariance is the
Gaussian (Knox) one of a fraction ``f_sky`` of the sky (1/12 for a HEALPix face), bands
independent: ``Cov[C^ij_b, C^kl_b] = (C^ik_b C^jl_b + C^il_b C^jk_b) / N_b`` with
``N_b = f_sky sum_{ell in b} (2 ell + 1)`` and the shape noise ``N^ii = sigma_e^2 / n_eff``
added to the auto spectra. The Fisher matrix is ``F = D Cov^-1 D^T`` for the derivatives
``D`` of the band means by the parameters; Gaussian priors add ``1 / sigma^2`` on the
diagonal (a flat box prior of width ``w`` counts as ``sigma = w / sqrt(12)``, the box's own
standard deviation). The FoM of (Omega_m, S8) is ``1 / sqrt(det Cov)`` of their 2 x 2 block
of ``(F + P)^-1``, the other parameters marginalised; or of ``(F + P)`` restricted to the two,
the others fixed.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lensing_core._types import FloatArray
from lensing_core.dataset.schema import config_name
from lensing_core.io import write_json
from lensing_core.results import Table
from lensing_core.sims.catalog import FIDUCIAL_PARAMS, FIDUCIAL_SIM_ID, GOWER_STREET_RANGES
from lensing_core.sims.sources import KappaSource
from lensing_core.sims.theory import kappa_cls
from lensing_core.sky.noise import noise_power
from lensing_core.sky.power import TilePowerEstimator, bin_pairs
from lensing_core.sky.tiles import LMAX_TO_NSIDE
from lensing_core.storage import DataRoot

logger = logging.getLogger(__name__)

#: f_sky of one tile: a HEALPix base face.
FACE_FSKY = 1.0 / 12.0


def band_means(cls: FloatArray, edges: npt.ArrayLike) -> FloatArray:
    """
    ``(2 ell + 1)``-weighted means of spectra over bands.

    Parameters
    ----------
    cls
        ``(n_bins, n_bins, lmax + 1)`` spectra, steradians.
    edges
        Band edges ``(n_bands + 1,)``: band b holds the integers ``edges[b] <= ell <
        edges[b + 1]``.

    Returns
    -------
        ``(n_bins, n_bins, n_bands)``.

    Raises
    ------
    ValueError
        A band holds no integer ell, or reaches beyond the spectra's lmax.
    """
    cls = np.asarray(cls, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    ell = np.arange(cls.shape[-1])
    out = []
    for lo, hi in itertools.pairwise(edges):
        inside = (ell >= lo) & (ell < hi)
        if not inside.any() or hi > cls.shape[-1]:
            msg = f"band [{lo:.1f}, {hi:.1f}) holds no ell of spectra with lmax {ell[-1]}"
            raise ValueError(msg)
        weight = 2 * ell[inside] + 1.0
        out.append((cls[..., inside] * weight).sum(axis=-1) / weight.sum())
    return np.stack(out, axis=-1)


def pair_data(spectra: npt.ArrayLike) -> FloatArray:
    """
    Band powers as one data vector per leading index, in the covariance's order.

    Parameters
    ----------
    spectra
        ``(..., n_bins, n_bins, n_bands)``.

    Returns
    -------
        ``(..., n_pairs * n_bands)``: pair p, band b at ``p * n_bands + b``, pairs ``i <= j``
        as in :func:`gaussian_covariance`.
    """
    x = np.asarray(spectra, dtype=np.float64)
    stacked = np.stack([x[..., i, j, :] for i, j in bin_pairs(x.shape[-2])], axis=-2)
    return stacked.reshape(*x.shape[:-3], -1)


def modes_per_band(edges: npt.ArrayLike, f_sky: float) -> FloatArray:
    """``f_sky sum_{ell in b} (2 ell + 1)``: the independent modes of each band."""
    edges = np.asarray(edges, dtype=np.float64)
    ell = np.arange(int(np.ceil(edges[-1])) + 1)
    return np.array(
        [
            f_sky * (2 * ell[(ell >= lo) & (ell < hi)] + 1.0).sum()
            for lo, hi in itertools.pairwise(edges)
        ]
    )


def gaussian_covariance(
    signal: FloatArray, noise: npt.ArrayLike, n_modes: npt.ArrayLike
) -> FloatArray:
    """
    Gaussian covariance of the band powers of the 10 bin pairs.

    Parameters
    ----------
    signal
        Band means ``(n_bins, n_bins, n_bands)`` of the signal spectra.
    noise
        Noise power per bin ``(n_bins,)`` (``sigma_e^2 / n_eff``), added to the auto spectra.
    n_modes
        Independent modes per band ``(n_bands,)`` (:func:`modes_per_band`).

    Returns
    -------
        ``(n_pairs * n_bands, n_pairs * n_bands)``, data ordered pair-major (pair p, band b at
        ``p * n_bands + b``), pairs in :data:`~lensing_core.sky.power.PAIRS` order.
    """
    total = np.array(signal, dtype=np.float64)
    n_bins, _, n_bands = total.shape
    total[np.arange(n_bins), np.arange(n_bins)] += np.asarray(noise, dtype=np.float64)[:, None]
    n_modes = np.asarray(n_modes, dtype=np.float64)
    pairs = bin_pairs(n_bins)
    cov = np.zeros((len(pairs), n_bands, len(pairs), n_bands))
    for p, (i, j) in enumerate(pairs):
        for q, (k, m) in enumerate(pairs):
            cov[p, :, q, :] = np.diag(
                (total[i, k] * total[j, m] + total[i, m] * total[j, k]) / n_modes
            )
    return cov.reshape(len(pairs) * n_bands, len(pairs) * n_bands)


def fisher_matrix(
    derivatives: npt.ArrayLike, covariance: npt.ArrayLike, *, what: str = ""
) -> FloatArray:
    """
    ``F = D Cov^-1 D^T``.

    Parameters
    ----------
    derivatives
        ``(n_params, n_data)`` derivatives of the data by the parameters.
    covariance
        ``(n_data, n_data)`` data covariance.
    what
        How to name the configuration in errors.

    Raises
    ------
    ValueError
        The covariance is not symmetric positive definite, or the Fisher matrix is singular
        (a parameter the data cannot see).
    """
    d = np.asarray(derivatives, dtype=np.float64)
    cov = np.asarray(covariance, dtype=np.float64)
    label = f"{what}: " if what else ""
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValueError(f"{label}the band-power covariance is not positive definite") from None
    white = np.linalg.solve(chol, d.T)  # Cov^-1/2 D^T
    fisher = white.T @ white
    if np.linalg.matrix_rank(fisher) < len(fisher):
        raise ValueError(
            f"{label}the Fisher matrix is singular: a parameter leaves the data unchanged"
        )
    return fisher


def box_prior_sigma(low: float, high: float) -> float:
    """Standard deviation of a flat prior on ``[low, high]``: ``(high - low) / sqrt(12)``."""
    return (high - low) / np.sqrt(12.0)


def fom(
    fisher: npt.ArrayLike,
    prior_sigmas: npt.ArrayLike,
    *,
    indices: tuple[int, int] = (0, 1),
    marginalise: bool = True,
) -> float:
    """
    Figure of merit of two parameters from a Fisher matrix and Gaussian priors.

    Parameters
    ----------
    fisher
        ``(n_params, n_params)``; all zeros gives the priors' FoM.
    prior_sigmas
        Prior standard deviation of every parameter ``(n_params,)`` (``inf``: none).
    indices
        The two parameters of the FoM (Omega_m, S8 first by convention).
    marginalise
        Marginalise over the other parameters (invert the whole matrix); otherwise fix them
        (invert the 2 x 2 block of the two).

    Returns
    -------
        ``1 / sqrt(det C)`` of the two parameters' covariance ``C``.

    Raises
    ------
    ValueError
        The posterior information matrix is not positive definite.
    """
    total = np.asarray(fisher, dtype=np.float64) + np.diag(
        1.0 / np.asarray(prior_sigmas, float) ** 2
    )
    sel = np.asarray(indices)
    try:
        np.linalg.cholesky(total)
        cov = (
            np.linalg.inv(total)[np.ix_(sel, sel)]
            if marginalise
            else np.linalg.inv(total[np.ix_(sel, sel)])
        )
    except np.linalg.LinAlgError:
        raise ValueError("Fisher matrix plus priors is not positive definite") from None
    return float(1.0 / np.sqrt(np.linalg.det(cov)))


#: The parameters of the forecast: the FoM pair first, then those marginalised.
FISHER_PARAMS: tuple[str, ...] = ("Omega_m", "S8", "w", "h", "n_s", "Omega_bh2", "m_nu")


@dataclass(frozen=True)
class SpectraDerivatives:
    """
    Theory spectra at the fiducial and their derivatives by :data:`FISHER_PARAMS`.

    Attributes
    ----------
    cls
        ``(n_bins, n_bins, lmax + 1)`` at the fiducial, steradians.
    derivatives
        ``(n_params, n_bins, n_bins, lmax + 1)``: central finite differences.
    param_names, steps
        The parameters and the step of each difference.
    """

    cls: FloatArray
    derivatives: FloatArray
    param_names: tuple[str, ...]
    steps: tuple[float, ...]


def spectra_derivatives(
    nz: tuple[FloatArray, FloatArray],
    lmax: int,
    *,
    fiducial: Mapping[str, float] = FIDUCIAL_PARAMS,
    ranges: Mapping[str, tuple[float, float]] = GOWER_STREET_RANGES,
    step_fraction: float = 0.01,
) -> SpectraDerivatives:
    """
    Convergence spectra of the fiducial and their derivatives (pyccl, halofit).

    Parameters
    ----------
    nz
        ``(z, n)`` of the maps' source bins (the stand-in n(z) or the ``NZ_SOURCE`` file).
    lmax
        Largest multipole.
    fiducial
        The point of the derivatives; S8 is varied at fixed Omega_m (sigma_8 follows).
    ranges
        The suite's box: each step is *step_fraction* of its parameter's width.
    step_fraction
        Step of the central differences, as a fraction of the box width.

    Returns
    -------
        The spectra and derivatives, two pyccl evaluations per parameter.
    """
    point = {name: float(fiducial[name]) for name in FISHER_PARAMS}
    cls = kappa_cls(point, nz, lmax)
    steps, derivs = [], []
    for name in FISHER_PARAMS:
        lo, hi = ranges[name]
        step = step_fraction * (hi - lo)
        up = kappa_cls({**point, name: point[name] + step}, nz, lmax)
        down = kappa_cls({**point, name: point[name] - step}, nz, lmax)
        derivs.append((up - down) / (2 * step))
        steps.append(step)
    return SpectraDerivatives(cls, np.stack(derivs), FISHER_PARAMS, tuple(steps))


@dataclass(frozen=True)
class FisherForecast:
    """
    The Fisher forecast of the band powers of one tile.

    Attributes
    ----------
    fom_marginalised
        FoM of (Omega_m, S8), the other parameters marginalised with their box priors.
    fom_fixed
        The same with the other parameters fixed at the fiducial.
    fom_prior
        FoM of the box prior on (Omega_m, S8) alone.
    fisher
        ``(n_params, n_params)`` of the band powers, priors not included.
    prior_sigmas
        ``range / sqrt(12)`` of each parameter.
    param_names, edges, n_modes, f_sky
        What the forecast is of.
    """

    fom_marginalised: float
    fom_fixed: float
    fom_prior: float
    fisher: FloatArray
    prior_sigmas: FloatArray
    param_names: tuple[str, ...]
    edges: FloatArray
    n_modes: FloatArray
    f_sky: float

    def to_record(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {
            "fom_fisher": self.fom_marginalised,
            "fom_fisher_fixed": self.fom_fixed,
            "fom_prior": self.fom_prior,
            "param_names": list(self.param_names),
            "prior_sigmas": self.prior_sigmas.tolist(),
            "fisher": self.fisher.tolist(),
            "edges": self.edges.tolist(),
            "n_modes": self.n_modes.tolist(),
            "f_sky": self.f_sky,
        }


def forecast(
    spectra: SpectraDerivatives,
    noise: npt.ArrayLike,
    edges: npt.ArrayLike,
    *,
    f_sky: float = FACE_FSKY,
    ranges: Mapping[str, tuple[float, float]] = GOWER_STREET_RANGES,
    what: str = "",
) -> FisherForecast:
    """
    Fisher forecast of band powers in the bands *edges* of one tile.

    Parameters
    ----------
    spectra
        Fiducial spectra and derivatives (:func:`spectra_derivatives`), lmax at least the
        last edge.
    noise
        Shape-noise power per bin ``(n_bins,)``, ``sigma_e^2 / n_eff`` (zeros: noiseless).
    edges
        Band edges of the band powers (those of the estimator of the tiles).
    f_sky
        Sky fraction of one tile.
    ranges
        The suite's box: the priors of every parameter.
    what
        The configuration, for errors.

    Returns
    -------
        FoM marginalised, fixed and of the prior alone, with the Fisher matrix.

    Raises
    ------
    ValueError
        A band outside the spectra, a covariance that is not positive definite or a singular
        Fisher matrix (named with *what*).
    """
    edges = np.asarray(edges, dtype=np.float64)
    signal = band_means(spectra.cls, edges)
    n_modes = modes_per_band(edges, f_sky)
    cov = gaussian_covariance(signal, noise, n_modes)
    d = np.stack([band_means(dc, edges) for dc in spectra.derivatives])  # (P, 4, 4, B)
    fisher = fisher_matrix(pair_data(d), cov, what=what)
    sigmas = np.array([box_prior_sigma(*ranges[name]) for name in spectra.param_names])
    return FisherForecast(
        fom_marginalised=fom(fisher, sigmas),
        fom_fixed=fom(fisher, sigmas, marginalise=False),
        fom_prior=fom(np.zeros_like(fisher), sigmas),
        fisher=fisher,
        prior_sigmas=sigmas,
        param_names=spectra.param_names,
        edges=edges,
        n_modes=n_modes,
        f_sky=f_sky,
    )


@dataclass(frozen=True)
class FisherReport:
    """
    The Fisher forecast of one configuration, written.

    Attributes
    ----------
    path
        ``models/fisher/lmax{L}_{noise}/fisher.json``.
    record
        What it holds: :meth:`FisherForecast.to_record` plus the configuration, the tile's
        bands, the fiducial point, the noise, the marginal errors, and ``fom_fisher_window``:
        the marginalised FoM with only the modes the band powers' apodised window keeps
        (``f_sky = window_mode_fraction / 12``; ``fom_fisher`` is of the whole face).
    """

    path: Path
    record: dict[str, Any]

    def to_metadata(self) -> dict[str, Any]:
        """The FoMs and a table of each parameter's prior and forecast error."""
        r = self.record
        rows = [
            {"parameter": name, "fiducial": fid, "prior_sigma": prior, "sigma": sigma}
            for name, fid, prior, sigma in zip(
                r["param_names"],
                r["fiducial_values"],
                r["prior_sigmas"],
                r["sigma_marginalised"],
                strict=True,
            )
        ]
        columns = {"parameter": "string", "fiducial": "float", "prior_sigma": "float"}
        return {
            "path": self.path,
            **{
                key: r[key]
                for key in ("fom_fisher", "fom_fisher_fixed", "fom_fisher_window", "fom_prior")
            },
            "ell_range": [r["edges"][0], r["edges"][-1]],
            "n_bands": len(r["edges"]) - 1,
            "parameters": Table({**columns, "sigma": "float"}, rows),
        }


def fisher_report(
    root: DataRoot,
    lmax: int,
    noise_level: str,
    source: KappaSource,
    *,
    noise_convention: str = "per_component",
    n_bands: int = 10,
) -> FisherReport:
    """
    The Fisher forecast of one configuration's tile band powers, written atomically.

    Parameters
    ----------
    root
        The data root (the record goes to ``models/fisher/lmax{L}_{noise}/fisher.json``).
    lmax, noise_level
        The configuration: its tiles have ``LMAX_TO_NSIDE[lmax]`` pixels a side, and their
        band powers the bands of :class:`~lensing_core.sky.power.TilePowerEstimator`.
    source
        The kappa source in effect: its n(z) and its fiducial sim's parameters.
    noise_convention
        How shape noise enters the tiles (that of the tiling options).
    n_bands
        Science bands, as for the band powers.

    Raises
    ------
    ValueError
        Tiles too small for the bands, a Fisher matrix that is singular or not positive
        definite: the message names the configuration.
    """
    what = f"configuration {config_name(lmax, noise_level)}"
    try:
        estimator = TilePowerEstimator(LMAX_TO_NSIDE[lmax], lmax, n_bands=n_bands)
    except (KeyError, ValueError) as err:
        raise ValueError(f"{what}: no tile band powers: {err}") from None
    catalog = source.catalog
    fiducial = dict(FIDUCIAL_PARAMS)
    if FIDUCIAL_SIM_ID in catalog.sim_ids:
        fiducial.update({k: v for k, v in catalog[FIDUCIAL_SIM_ID].items() if k in fiducial})
    spectra = spectra_derivatives(source.nz(), int(np.ceil(estimator.edges[-1])), fiducial=fiducial)
    noise = noise_power(noise_level, convention=noise_convention)
    result = forecast(spectra, noise, estimator.edges, what=what)
    # the same with the modes the apodised window keeps (f_sky 1/12 is the whole face)
    windowed = forecast(
        spectra, noise, estimator.edges, f_sky=FACE_FSKY * estimator.window_mode_fraction, what=what
    )
    total = result.fisher + np.diag(1.0 / result.prior_sigmas**2)
    record = {
        "config": config_name(lmax, noise_level),
        "lmax": int(lmax),
        "noise_level": noise_level,
        "source": source.name,
        "n_pix": estimator.n_pix,
        "fiducial_sim_id": FIDUCIAL_SIM_ID,
        "fiducial_values": [float(fiducial[name]) for name in result.param_names],
        "noise_power": np.asarray(noise, dtype=np.float64).tolist(),
        "noise_convention": noise_convention,
        "sigma_marginalised": np.sqrt(np.diag(np.linalg.inv(total))).tolist(),
        "window_mode_fraction": estimator.window_mode_fraction,
        "fom_fisher_window": windowed.fom_marginalised,
        **result.to_record(),
    }
    path = write_json(root.fisher_path(lmax, noise_level), record, tmp_root=root.tmp_root)
    logger.info(
        "%s: Fisher FoM %.1f (others fixed %.1f, prior %.1f) in %s",
        what,
        result.fom_marginalised,
        result.fom_fixed,
        result.fom_prior,
        path,
    )
    return FisherReport(path, record)
