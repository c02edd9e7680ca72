"""Validation of a sim's tomographic convergence maps: the numbers behind the asset checks.

Each check of the ``kappa_maps`` asset is computed here, for one sim's maps (HEALPix RING,
one map per tomographic bin): every pixel is finite, each map's mean is near zero, the
standard deviation grows with the bin index (higher bins lens more), and the auto and cross
angular power spectra of the ``i <= j`` bin pairs match the pyccl theory in logarithmic
multipole bands, within a tolerance set by their Gaussian cosmic-variance errors.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lensing_core._types import FloatArray, IntArray
from lensing_core.sims.theory import kappa_cls
from lensing_core.sky.harmonics import alm_to_cl, map2alm
from lensing_core.sky.healpix import nside_from_npix
from lensing_core.storage import DataRoot

#: Lowest multipole compared with theory (see :func:`default_ell_range`).
ELL_MIN = 10
#: Highest multipole ever compared with theory (see :func:`default_ell_range`).
ELL_MAX_CAP = 1000
#: Default number of logarithmic bands between ``ell_min`` and ``ell_max``.
N_BANDS = 8
#: Fewest modes in a band (see :func:`band_edges`).
MIN_MODES = 100
#: Jacobi iterations of the analysis of the maps.
N_ITER = 3
#: Relative tolerance floor on every band ratio (see :func:`judge_spectra`).
REL_TOL = 0.10
#: Number of Gaussian cosmic-variance standard deviations a band ratio may deviate.
N_SIGMA = 4.0
#: Largest accepted ``|mean| / std`` of a full-sky map (see :func:`mean_over_std`).
MEAN_TOL_IN_STD = 0.05

#: The checks of one sim's maps, as :func:`validate_kappa_maps` reports them.
CHECK_NAMES: tuple[str, ...] = (
    "maps_finite",
    "mean_near_zero",
    "variance_increases_with_bin",
    "spectra_match_theory",
)


# ---------------------------------------------------------------------------------------------
# power spectra


def measured_spectra(maps: FloatArray, lmax: int, *, n_iter: int = N_ITER) -> FloatArray:
    """
    Auto and cross angular power spectra of full-sky maps.

    Parameters
    ----------
    maps
        Maps, shape ``(n_bins, npix)``, HEALPix RING ordering, finite.
    lmax
        Largest multipole analysed.
    n_iter
        Jacobi iterations of the analysis (healpy's ``iter``).

    Returns
    -------
        ``cls[i, j, ell]``, shape ``(n_bins, n_bins, lmax + 1)``, symmetric in ``i, j``,
        ``C_l = sum_m Re(a_lm b_lm^*) / (2l + 1)`` (full sky, no pixel-window correction).

    Notes
    -----
    The analysis is :func:`lensing_core.sky.harmonics.map2alm` in double precision with
    uniform quadrature weights: no ``healpy.pixwin`` or ``use_pixel_weights``, which need
    files from the network. Analysing at ``lmax`` rather than ``3 nside - 1`` changes the
    spectra at ``ell <= lmax`` by far less than their cosmic variance (power above ``lmax``
    barely aliases with 3 iterations).
    """
    alm = map2alm(np.asarray(maps, dtype=np.float64), lmax, n_iter=n_iter, dtype=np.float64)
    n_bins = alm.shape[0]
    cls = np.empty((n_bins, n_bins, lmax + 1))
    for i in range(n_bins):
        for j in range(i + 1):
            cls[i, j] = cls[j, i] = alm_to_cl(alm[i], alm[j])
    return cls


def default_ell_range(nside: int) -> tuple[int, int]:
    r"""
    Multipoles ``(ell_min, ell_max)`` compared with theory for maps at *nside*.

    Returns
    -------
        ``(10, min(nside // 2, 1000))``.

    Raises
    ------
    ValueError
        If *nside* is too small to leave a range (``nside < 32``).

    Notes
    -----
    **Low end.** The theory is Limber-approximated, which is accurate to a few per cent
    for broad lensing kernels only above ``ell ~ 10``; below, cosmic variance is also
    too large for the comparison to say anything.

    **High end, pixel window.** A map made by averaging over pixels (Born maps from shells
    of particle counts, degraded to the output nside; most ``kappa_npz`` maps) is the field
    convolved with the pixel: its spectrum is suppressed by the pixel window
    :math:`w_\ell^2`. ``healpy.pixwin`` needs the network, so no correction is applied;
    instead the range stops at ``nside / 2``, where the suppression is about 2 per cent
    (measured here by averaging band-limited white noise from nside 1024 to 128:
    :math:`w_\ell^2 \approx 0.994, 0.977, 0.949, 0.911` at ``ell / nside = 1/4, 1/2,
    3/4, 1``; a disk of the pixel's area gives :math:`[2 J_1(x)/x]^2`, ``x = ell /
    (sqrt(3) nside)``, within 1 per cent of these). The synthetic maps are samples of a
    band-limited field with no pixel window; they pass either way.

    **High end, N-body.** Born maps from N-body light-cone shells fall below halofit at
    high ell: the particle mass and force resolution of the simulation, the finite
    shell thickness and the source shells' nside (2048 in Gower Street, itself a pixel
    window) suppress power from ``ell ~ 1000-2000`` on, while shot noise of the particle
    counts adds a white floor. The cap at 1000 keeps the comparison below where the
    simulation, rather than the pipeline, sets the spectrum.
    """
    ell_max = min(nside // 2, ELL_MAX_CAP)
    if ell_max <= ELL_MIN:
        msg = f"nside {nside} is too coarse to compare spectra over ell >= {ELL_MIN}"
        raise ValueError(msg)
    return ELL_MIN, ell_max


def band_edges(ell_min: int, ell_max: int, n_bands: int, *, min_modes: int = MIN_MODES) -> IntArray:
    """
    Logarithmic multipole bands of at least *min_modes* modes.

    Band *b* holds ``edges[b] <= ell < edges[b + 1]``.

    Parameters
    ----------
    ell_min, ell_max
        First and last multipole covered (both included).
    n_bands
        Number of logarithmic bands wanted.
    min_modes
        Smallest number of modes ``sum (2 ell + 1)`` in a band: a narrower band is merged
        with the next one (the last with the one before).

    Returns
    -------
        Increasing integer edges, shape ``(n_bands_actual + 1,)``, from ``ell_min`` to
        ``ell_max + 1``, ``n_bands_actual <= n_bands``.

    Notes
    -----
    A band of few modes has a skewed, heavy-tailed power distribution (chi-square with
    that many degrees of freedom), which a symmetric tolerance in standard deviations
    handles badly: at 25 modes (one multipole at ell 12) a 4 sigma excess has a
    probability near 1e-3 instead of 3e-5. From 100 modes on the tail is close to
    Gaussian.

    Examples
    --------
    >>> band_edges(10, 64, 4).tolist()
    [10, 16, 25, 41, 65]
    >>> band_edges(10, 32, 8).tolist()
    [10, 16, 21, 24, 28, 33]
    """
    if not 2 <= ell_min <= ell_max or n_bands < 1:
        msg = (
            f"expected 2 <= ell_min <= ell_max and n_bands >= 1, "
            f"got {ell_min}, {ell_max}, {n_bands}"
        )
        raise ValueError(msg)
    candidates = np.rint(np.geomspace(ell_min, ell_max + 1, n_bands + 1)).astype(np.int64)
    edges = [ell_min]
    for edge in np.unique(candidates)[1:]:
        if edge**2 - edges[-1] ** 2 >= min_modes:  # modes of ell in [lo, edge)
            edges.append(int(edge))
    if edges[-1] != ell_max + 1:
        if len(edges) > 1:
            edges[-1] = ell_max + 1  # merge the short remainder into the last band
        else:
            edges.append(ell_max + 1)
    return np.array(edges, dtype=np.int64)


def _band_means(values: FloatArray, edges: IntArray) -> FloatArray:
    """Unweighted mean of ``values[..., ell]`` over each band."""
    return np.stack(
        [values[..., lo:hi].mean(axis=-1) for lo, hi in itertools.pairwise(edges)],
        axis=-1,
    )


@dataclass(frozen=True, eq=False)
class SpectraComparison:
    """
    Band powers of a sim's maps against theory, for the ``i <= j`` pairs of bins.

    Attributes
    ----------
    ell_min, ell_max
        Multipole range compared (both included).
    edges
        Band edges, shape ``(n_bands + 1,)``: band *b* is ``edges[b] <= ell < edges[b + 1]``.
    ell_centres
        Mean multipole of each band, shape ``(n_bands,)``.
    pairs
        The bin pairs ``(i, j)``, ``i <= j``, in the order of the first axis below.
    measured, theory
        Band powers (unweighted mean of ``C_l`` over the band), ``(n_pairs, n_bands)``.
    sigma
        Gaussian full-sky cosmic-variance standard deviation of each measured band power
        under the theory, ``(n_pairs, n_bands)``.
    measured_cls, theory_cls
        Per-multipole spectra ``(n_bins, n_bins, ell_max + 1)``, for plots.
    """

    ell_min: int
    ell_max: int
    edges: IntArray
    ell_centres: FloatArray
    pairs: tuple[tuple[int, int], ...]
    measured: FloatArray
    theory: FloatArray
    sigma: FloatArray
    measured_cls: FloatArray = field(repr=False)
    theory_cls: FloatArray = field(repr=False)

    @property
    def ratio(self) -> FloatArray:
        """Measured over theory band power, ``(n_pairs, n_bands)``."""
        return self.measured / self.theory

    @property
    def ratio_sigma(self) -> FloatArray:
        """Cosmic-variance standard deviation of :attr:`ratio`, ``(n_pairs, n_bands)``."""
        return self.sigma / np.abs(self.theory)

    @property
    def deviation_sigma(self) -> FloatArray:
        """``(ratio - 1) / ratio_sigma``: each band's deviation in standard deviations."""
        return (self.ratio - 1.0) / self.ratio_sigma

    def pair_label(self, k: int) -> str:
        """``"ij"`` for pair *k* (bins counted from 0)."""
        i, j = self.pairs[k]
        return f"{i}{j}"


def compare_to_theory(
    maps: FloatArray,
    params: Mapping[str, float],
    nz: tuple[FloatArray, FloatArray],
    *,
    ell_min: int | None = None,
    ell_max: int | None = None,
    n_bands: int = N_BANDS,
) -> SpectraComparison:
    r"""
    Band powers of the auto and cross spectra of *maps* against the pyccl theory.

    Parameters
    ----------
    maps
        Convergence maps, shape ``(n_bins, npix)``, RING, finite, full sky.
    params
        Cosmological parameters of the sim, see
        :func:`lensing_core.sims.theory.ccl_cosmology`.
    nz
        ``(z, n)`` with ``n`` of shape ``(n_bins, n_z)``: the source n(z) the maps were
        made for.
    ell_min, ell_max
        Multipole range; :func:`default_ell_range` of the maps' nside where not given.
    n_bands
        Number of logarithmic bands, see :func:`band_edges`.

    Returns
    -------
        The comparison for the ``n_bins (n_bins + 1) / 2`` pairs ``i <= j``.

    Raises
    ------
    ValueError
        If the maps and the n(z) have different numbers of bins, or the range is invalid.

    Notes
    -----
    Per multipole, the Gaussian full-sky variance of a measured (cross-)spectrum is

    .. math::

        \operatorname{Var} \hat C^{ij}_\ell
            = \frac{C^{ii}_\ell C^{jj}_\ell + (C^{ij}_\ell)^2}{2\ell + 1},

    with theory spectra; a band power is the unweighted mean of the :math:`N_b`
    multipoles of the band, whose variance is the mean of the per-multipole variances
    divided by :math:`N_b` (different multipoles are independent on the full sky).
    Lognormal or N-body maps have extra (non-Gaussian) variance, which
    :func:`judge_spectra` allows for.
    """
    maps = np.asarray(maps)
    nside = nside_from_npix(maps.shape[-1])
    if ell_min is None or ell_max is None:
        default_min, default_max = default_ell_range(nside)
        ell_min = default_min if ell_min is None else ell_min
        ell_max = default_max if ell_max is None else ell_max
    if ell_max > 3 * nside - 1:
        msg = f"ell_max {ell_max} is above the band limit 3 * nside - 1 = {3 * nside - 1}"
        raise ValueError(msg)
    n_bins = maps.shape[0]
    if np.asarray(nz[1]).shape[0] != n_bins:
        msg = f"{n_bins} maps but an n(z) of {np.asarray(nz[1]).shape[0]} bins"
        raise ValueError(msg)
    edges = band_edges(ell_min, ell_max, n_bands)

    measured_cls = measured_spectra(maps, ell_max)
    theory_cls = kappa_cls(params, nz, ell_max)
    ell = np.arange(ell_max + 1)
    pairs = tuple((i, j) for i in range(n_bins) for j in range(i, n_bins))
    rows_i, rows_j = (np.array(a) for a in zip(*pairs, strict=True))
    measured_pairs = measured_cls[rows_i, rows_j]  # (n_pairs, ell_max + 1)
    theory_pairs = theory_cls[rows_i, rows_j]
    auto_products = theory_cls[rows_i, rows_i] * theory_cls[rows_j, rows_j]
    var_per_ell = (auto_products + theory_pairs**2) / (2 * ell + 1)  # Gaussian, full sky
    n_ells = np.diff(edges)
    return SpectraComparison(
        ell_min=int(ell_min),
        ell_max=int(ell_max),
        edges=edges,
        ell_centres=_band_means(ell.astype(np.float64), edges),
        pairs=pairs,
        measured=_band_means(measured_pairs, edges),
        theory=_band_means(theory_pairs, edges),
        sigma=np.sqrt(_band_means(var_per_ell, edges) / n_ells),
        measured_cls=measured_cls,
        theory_cls=theory_cls,
    )


@dataclass(frozen=True, eq=False)
class SpectraVerdict:
    """
    The pass/fail rule applied to a :class:`SpectraComparison`.

    Attributes
    ----------
    passed
        Whether every band of every pair lies within its tolerance.
    tolerance
        Allowed ``|ratio - 1|`` per pair and band, ``(n_pairs, n_bands)``.
    rel_tol, n_sigma
        The rule's parameters.
    max_abs_deviation
        Largest ``|ratio - 1|``.
    max_deviation_sigma
        Largest ``|ratio - 1| / ratio_sigma``.
    worst_pair, worst_band
        Pair label (``"ij"``) and band ``(lo, hi)`` (``hi`` excluded) of the band
        furthest outside (or least inside) its tolerance.
    n_failed
        Number of (pair, band) entries outside their tolerance.
    """

    passed: bool
    tolerance: FloatArray
    rel_tol: float
    n_sigma: float
    max_abs_deviation: float
    max_deviation_sigma: float
    worst_pair: str
    worst_band: tuple[int, int]
    n_failed: int


def judge_spectra(
    comparison: SpectraComparison, *, rel_tol: float = REL_TOL, n_sigma: float = N_SIGMA
) -> SpectraVerdict:
    r"""
    Pass when every band ratio of every pair is close enough to one.

    A band passes when :math:`|R - 1| < \max(\epsilon, n_\sigma \sigma_R)`, with :math:`R`
    the measured-over-theory band power, :math:`\sigma_R` its Gaussian cosmic-variance
    standard deviation (:attr:`SpectraComparison.ratio_sigma`), :math:`\epsilon` =
    *rel_tol* and :math:`n_\sigma` = *n_sigma*; the maps pass when all bands of all
    ``i <= j`` pairs (auto and cross) pass.

    Parameters
    ----------
    comparison
        Output of :func:`compare_to_theory`.
    rel_tol
        Systematic floor :math:`\epsilon` (default 0.10).
    n_sigma
        Statistical allowance in standard deviations (default 4).

    Notes
    -----
    *Statistical part.* Low-ell bands hold few modes: at nside 128 (ell 10-64, 7 bands of
    at least 100 modes, see :func:`band_edges`) :math:`\sigma_R` runs from about 0.12 down
    to 0.036; at nside 1024 (ell 10-512, 8 bands) from 0.12 to 0.004. Four sigma rather
    than two or three because 70-80 correlated bands are tested at once, and lognormal
    or N-body maps have non-Gaussian band-power variance that the Gaussian formula leaves
    out (for the synthetic maps the scatter of the ratios over realisations is 0.75-1.2
    times :math:`\sigma_R`).

    *Systematic floor, 10 per cent.* With many modes (high ell, high nside) the
    statistical allowance shrinks below the accuracy of the theory itself: the
    Eisenstein-Hu transfer function (no full Boltzmann solution; a few per cent), halofit
    against N-body power (about 5 per cent to ``k ~ 1 h/Mpc``), Limber near the low end
    (a few per cent at ``ell ~ 10``) and the pixel window (at most about 2 per cent over
    the default range, see :func:`default_ell_range`).

    What it catches: maps scaled by 1.2 (power 1.44) fail every band with more than about
    170 modes; a grossly wrong cosmology, a wrong n(z) or swapped bins shift whole spectra by
    tens of per cent. Synthetic lognormal maps, which follow the theory by construction,
    pass: over 100 realisations at nside 64 and 128 the largest band deviation was 3.3
    sigma (largest ``|R - 1|`` 0.25, in a low-ell band); for sim 109 at nside 128 the
    auto band ratios lie between 0.85 and 1.08, at most 1.6 sigma from one.
    """
    ratio = comparison.ratio
    deviation = np.abs(ratio - 1.0)
    tolerance = np.maximum(rel_tol, n_sigma * comparison.ratio_sigma)
    ok = deviation < tolerance
    margin = deviation / tolerance  # > 1 outside
    k, b = np.unravel_index(int(np.argmax(margin)), margin.shape)
    return SpectraVerdict(
        passed=bool(ok.all()),
        tolerance=tolerance,
        rel_tol=float(rel_tol),
        n_sigma=float(n_sigma),
        max_abs_deviation=float(deviation.max()),
        max_deviation_sigma=float(np.abs(comparison.deviation_sigma).max()),
        worst_pair=comparison.pair_label(int(k)),
        worst_band=(int(comparison.edges[b]), int(comparison.edges[b + 1])),
        n_failed=int((~ok).sum()),
    )


# ---------------------------------------------------------------------------------------------
# map statistics


def count_nonfinite(maps: FloatArray) -> IntArray:
    """Number of NaN or infinite pixels per map, shape ``(n_bins,)``."""
    return (~np.isfinite(maps)).sum(axis=-1)


def std_per_bin(maps: FloatArray) -> FloatArray:
    """Standard deviation of each map over its finite pixels, shape ``(n_bins,)``."""
    return np.array([np.std(m[np.isfinite(m)], dtype=np.float64) for m in maps])


def mean_over_std(maps: FloatArray) -> FloatArray:
    r"""
    Mean of each map over its finite pixels in units of its standard deviation.

    Returns
    -------
        ``mean / std`` per bin, shape ``(n_bins,)``.

    Notes
    -----
    The mean of a full-sky map is its monopole, :math:`a_{00} / \sqrt{4\pi}`, and the
    convergence monopole is zero: a Born map sums shells of overdensity
    :math:`\delta = n / \bar n - 1`, each of zero mean, with one weight per shell, so its
    mean vanishes to rounding; lognormal maps have :math:`C_0 = 0` for the Gaussian field
    and only a tiny monopole from the exponential (below 0.003 standard deviations in
    synthetic maps at nside 64-256). :data:`MEAN_TOL_IN_STD` (0.05) is more than ten times
    that, and a mean beyond it means an offset in the pipeline (counts not turned into
    overdensity, a mean-subtraction missing or done twice, a constant added).
    """
    means = np.array([np.mean(m[np.isfinite(m)], dtype=np.float64) for m in maps])
    return means / std_per_bin(maps)


def std_increases_with_bin(std: FloatArray) -> bool:
    """
    Whether the per-bin standard deviations strictly increase with the bin index.

    Notes
    -----
    Sources further away are lensed by more matter over a longer path, so for bins
    ordered by mean redshift the convergence variance grows with the bin index (for the
    DES-Y3-like bins at nside 128 the standard deviations are about 1.6, 2.6, 3.7 and
    4.6 times 1e-3). A decrease means bins out of order, or a bin's map from the wrong
    n(z).
    """
    return bool(np.all(np.diff(np.asarray(std)) > 0))


# ---------------------------------------------------------------------------------------------
# all checks of one sim


@dataclass(frozen=True)
class CheckOutcome:
    """
    Result of one check.

    Attributes
    ----------
    passed
        Whether the check passed.
    summary
        One line for a person: what was measured against what.
    metadata
        JSON-ready numbers behind the verdict.
    """

    passed: bool
    summary: str
    metadata: dict[str, Any]


@dataclass(frozen=True, eq=False)
class KappaValidation:
    """
    Every check of one sim's maps.

    Attributes
    ----------
    outcomes
        ``{check name: outcome}`` for every name in :data:`CHECK_NAMES`.
    comparison, verdict
        The spectra comparison and its verdict; ``None`` when it could not be made (then
        ``outcomes["spectra_match_theory"]`` says why).
    """

    outcomes: dict[str, CheckOutcome]
    comparison: SpectraComparison | None
    verdict: SpectraVerdict | None


def _rounded(values: Any, digits: int = 4) -> list[float]:
    return [float(f"{v:.{digits}g}") for v in np.ravel(values)]


def _spectra_outcome(comparison: SpectraComparison, verdict: SpectraVerdict) -> CheckOutcome:
    lo, hi = verdict.worst_band
    n_bands = comparison.ratio.size
    rule = f"max({verdict.rel_tol:g}, {verdict.n_sigma:g} sigma)"
    ells = f"{comparison.ell_min} <= ell <= {comparison.ell_max}"
    summary = (
        f"all {n_bands} band ratios within {rule} of 1 over {ells}"
        if verdict.passed
        else f"{verdict.n_failed} of {n_bands} band ratios outside {rule} of 1 over {ells}; "
        f"worst: pair {verdict.worst_pair}, ell {lo}-{hi - 1}"
    )
    metadata = {
        "ell_min": comparison.ell_min,
        "ell_max": comparison.ell_max,
        "band_edges": [int(e) for e in comparison.edges],
        "rel_tol": verdict.rel_tol,
        "n_sigma": verdict.n_sigma,
        "max_abs_deviation": round(verdict.max_abs_deviation, 4),
        "max_deviation_sigma": round(verdict.max_deviation_sigma, 2),
        "worst_pair": verdict.worst_pair,
        "worst_band": list(verdict.worst_band),
        "n_failed_bands": verdict.n_failed,
        "auto_ratio_mean": {
            comparison.pair_label(k): round(float(comparison.ratio[k].mean()), 4)
            for k, (i, j) in enumerate(comparison.pairs)
            if i == j
        },
    }
    return CheckOutcome(verdict.passed, summary, metadata)


def validate_kappa_maps(
    maps: FloatArray,
    params: Mapping[str, float],
    nz: tuple[FloatArray, FloatArray],
    *,
    ell_min: int | None = None,
    ell_max: int | None = None,
    n_bands: int = N_BANDS,
    rel_tol: float = REL_TOL,
    n_sigma: float = N_SIGMA,
    mean_tol: float = MEAN_TOL_IN_STD,
) -> KappaValidation:
    """
    Run every check on the maps of one sim.

    Parameters
    ----------
    maps
        Convergence maps, shape ``(n_bins, npix)``, RING (non-finite pixels allowed: they
        fail ``maps_finite`` and prevent the spectra comparison).
    params
        The sim's cosmological parameters. Where one is NaN or missing (``kappa_npz``
        maps without a parameter table), or the maps are too coarse for
        :func:`default_ell_range`, the spectra are not compared and
        ``spectra_match_theory`` fails saying why.
    nz
        Source n(z) the maps were made for, :meth:`lensing_core.sims.sources.KappaSource.nz`.
    ell_min, ell_max, n_bands
        See :func:`compare_to_theory`.
    rel_tol, n_sigma
        See :func:`judge_spectra`.
    mean_tol
        Largest accepted ``|mean| / std``, see :func:`mean_over_std`.

    Returns
    -------
        Outcomes of ``maps_finite`` (no NaN or infinite pixel), ``mean_near_zero``
        (``|mean| < mean_tol * std`` in every bin), ``variance_increases_with_bin`` and
        ``spectra_match_theory`` (:func:`judge_spectra`).
    """
    maps = np.asarray(maps)
    nside = nside_from_npix(maps.shape[-1])
    nonfinite = count_nonfinite(maps)
    std = std_per_bin(maps)
    mean_std = mean_over_std(maps)
    n_bad = int(nonfinite.sum())
    outcomes = {
        "maps_finite": CheckOutcome(
            n_bad == 0,
            f"{n_bad} NaN or infinite pixels of {maps.size}",
            {"nonfinite_pixels": n_bad, "nonfinite_per_bin": [int(n) for n in nonfinite]},
        ),
        "mean_near_zero": CheckOutcome(
            bool(np.all(np.abs(mean_std) < mean_tol)),
            f"max |mean| / std = {np.abs(mean_std).max():.3g} (limit {mean_tol:g})",
            {"mean_over_std": _rounded(mean_std), "limit": mean_tol},
        ),
        "variance_increases_with_bin": CheckOutcome(
            std_increases_with_bin(std),
            "std per bin: " + ", ".join(f"{s:.3g}" for s in std),
            {
                "std_per_bin": _rounded(std, 6),
                "std_ratio_to_previous": _rounded(std[1:] / std[:-1]),
            },
        ),
    }

    comparison = verdict = None
    missing = sorted(k for k, v in params.items() if isinstance(v, float) and math.isnan(v))
    if n_bad:
        reason = "not compared: the maps have NaN or infinite pixels"
    elif missing or not params:
        reason = f"not compared: the sim has no value for {missing or 'any parameter'}"
    elif ell_max is None and nside // 2 <= ELL_MIN:
        reason = f"not compared: nside {nside} is too coarse for ell >= {ELL_MIN}"
    else:
        try:
            comparison = compare_to_theory(
                maps, params, nz, ell_min=ell_min, ell_max=ell_max, n_bands=n_bands
            )
        except KeyError as err:  # a parameter the theory needs is absent
            reason = f"not compared: {err.args[0]}"
    if comparison is None:
        outcomes["spectra_match_theory"] = CheckOutcome(False, reason, {"nside": nside})
    else:
        verdict = judge_spectra(comparison, rel_tol=rel_tol, n_sigma=n_sigma)
        outcomes["spectra_match_theory"] = _spectra_outcome(comparison, verdict)
    return KappaValidation(outcomes=outcomes, comparison=comparison, verdict=verdict)


# ---------------------------------------------------------------------------------------------
# inputs and outputs


def read_kappa_for_checks(root: DataRoot, sim_id: int) -> tuple[FloatArray, dict[str, Any]]:
    """
    The maps and metadata of one sim, keeping non-finite pixels for the checks to count.

    Returns
    -------
        Maps ``(4, npix)`` RING and the metadata written with them.

    Raises
    ------
    lensing_core.io.InputMissingError
        If the file does not exist.
    ValueError
        If the file is corrupt, lacks a bin, or the bins differ in size or are not HEALPix.
    """
    maps, metadata = root.read_kappa(sim_id)
    try:
        nside_from_npix(maps.shape[-1])
    except ValueError as err:
        msg = f"kappa maps of sim {sim_id} ({root.kappa_path(sim_id)}): {err}"
        raise ValueError(msg) from None
    return maps, metadata
