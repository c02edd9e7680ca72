"""Calibration diagnostics of Gaussian posteriors: coverage curve, SBC ranks and TARP.

Each row ``i`` (a tile) holds a Gaussian posterior ``N(mean[i], cov[i])`` over ``d``
parameters and the true ``theta[i]``; all in one set of units (the diagnostics are invariant
under the affine normalisation of :mod:`lensing_core.inference.fom`).

- :func:`coverage_curve`: the expected-coverage curve over all credible levels, its
  pointwise binomial band, and the verdict ``calibrated`` / ``over-confident`` /
  ``under-confident`` / ``mixed`` from one-sided Kolmogorov-Smirnov tests.
- :func:`sbc_ranks`: per-parameter ranks of the truth among posterior draws (simulation-based
  calibration), their histogram and a chi-square uniformity p-value per parameter.
- :func:`tarp_coverage`: TARP expected coverage (Lemos, Coogan et al. 2023), computed by the
  ``tarp`` package.
- :func:`calibration_diagnostics`: the three together, a :class:`CalibrationReport` whose
  :meth:`~CalibrationReport.to_record` is JSON-ready.

The verdict
-----------
For a Gaussian posterior the credibility of row ``i`` is ``u_i = F_{chi2_d}(d_i^2)``,
``d_i^2`` the squared Mahalanobis distance of the truth (:func:`~.fom.mahalanobis_sq`): the
smallest credible level whose highest-density ellipse contains the truth. For a calibrated
posterior ``u ~ Uniform(0, 1)`` and the coverage curve ``C(p) = #{u_i <= p} / n`` is the
empirical CDF of ``u``. An over-confident posterior (ellipses too small) puts the truth
outside: ``u`` piles up near 1 and ``C(p) < p``; an under-confident one gives ``C(p) > p``.
The verdict uses the two one-sided KS statistics over *all* levels,
``D_over = max_p (p - C(p))`` and ``D_under = max_p (C(p) - p)``, each tested at ``alpha / 2``
with the exact one-sided (Smirnov) distribution (:data:`scipy.stats.ksone`): equivalently,
the curve leaving the simultaneous band ``p -/+ ks_halfwidth`` below (over-confident) or
above (under-confident). Both sides significant is ``mixed`` (e.g. some tiles too narrow,
others too wide). The false-alarm rate on a calibrated posterior with independent rows is
at most ``alpha`` (union bound of two exact ``alpha / 2`` tests; 0.01 by default).
Correlated rows (e.g. tiles of one simulation sharing its truth) void that guarantee.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from lensing_core._types import FloatArray, IntArray
from lensing_core.inference.fom import coverage, mahalanobis_sq

#: Fewest rows a diagnostic accepts: below this the one-sided KS test at the default
#: ``alpha`` can hardly reject, and the rank histogram has no bins to speak of.
MIN_ROWS = 10

#: Credible levels of the coverage curve.
DEFAULT_LEVELS: FloatArray = np.linspace(0.02, 0.98, 49)

#: The possible verdicts of :func:`coverage_curve`.
VERDICTS: tuple[str, ...] = ("calibrated", "over-confident", "under-confident", "mixed")


def _checked(mean: Any, cov: Any, theta: Any) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Validate one Gaussian posterior and one truth per row; return float64 arrays."""
    mean = np.asarray(mean, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    theta = np.asarray(theta, dtype=np.float64)
    if mean.ndim != 2 or theta.shape != mean.shape or cov.shape != (*mean.shape, mean.shape[1]):
        msg = (
            "expected mean (n, d), cov (n, d, d) and theta (n, d) of one n and d, got "
            f"{mean.shape}, {cov.shape} and {theta.shape}"
        )
        raise ValueError(msg)
    n = mean.shape[0]
    if n < MIN_ROWS:
        msg = f"calibration needs at least {MIN_ROWS} rows (tiles), got {n}"
        raise ValueError(msg)
    for name, arr in (("mean", mean), ("cov", cov), ("theta", theta)):
        if not np.all(np.isfinite(arr)):
            first = np.argwhere(~np.isfinite(arr))[0, 0]
            msg = f"{name} of row {first} holds non-finite values"
            raise ValueError(msg)
    if not np.allclose(cov, np.swapaxes(cov, -1, -2), rtol=1e-8, atol=0.0):
        first = np.argwhere(~np.isclose(cov, np.swapaxes(cov, -1, -2), rtol=1e-8, atol=0.0))
        msg = f"cov of row {first[0, 0]} is not symmetric"
        raise ValueError(msg)
    min_eig = np.linalg.eigvalsh(cov)[:, 0]
    if np.any(min_eig <= 0):
        first = int(np.argmax(min_eig <= 0))
        msg = (
            f"cov of row {first} is not positive definite (smallest eigenvalue {min_eig[first]!r})"
        )
        raise ValueError(msg)
    return mean, cov, theta


def _draw(
    mean: FloatArray, cov: FloatArray, n_samples: int, rng: np.random.Generator
) -> FloatArray:
    """``(n_samples, n, d)`` draws, ``[:, i]`` from ``N(mean[i], cov[i])``."""
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        msg = f"expected a positive integer n_samples, got {n_samples!r}"
        raise ValueError(msg)
    chol = np.linalg.cholesky(cov)  # (n, d, d), lower
    z = rng.standard_normal((int(n_samples), *mean.shape))  # (n_samples, n, d)
    return mean[None] + np.einsum("nij,snj->sni", chol, z)


def _require_finite(record: dict[str, Any], what: str) -> dict[str, Any]:
    def walk(value: Any) -> bool:
        if isinstance(value, dict):
            return all(walk(v) for v in value.values())
        if isinstance(value, list):
            return all(walk(v) for v in value)
        return not isinstance(value, float) or bool(np.isfinite(value))

    if not walk(record):
        msg = f"{what} record holds a NaN or infinity"
        raise ValueError(msg)
    return record


def _floats(values: Any) -> list[Any]:
    return list(np.asarray(values, dtype=np.float64).tolist())


# --------------------------------------------------------------------------- coverage curve


@dataclass(frozen=True)
class CoverageCurve:
    """
    Expected coverage of the highest-density ellipses over credible levels, and its verdict.

    Attributes
    ----------
    levels
        ``(n_levels,)`` credible levels in ``(0, 1)``.
    coverage
        ``(n_levels,)`` fraction of rows whose truth lies inside the ellipse of each level.
    band_lo, band_hi
        ``(n_levels,)`` pointwise central ``band_level`` interval of ``Binomial(n, p) / n``:
        where the coverage of a calibrated posterior falls at one level.
    band_level
        Probability content of the pointwise band (e.g. 0.95).
    n
        Number of rows (tiles).
    credibility
        ``(n,)`` ``u_i = F_{chi2_d}(d_i^2)``, Uniform(0, 1) when calibrated.
    ks_over, ks_under
        One-sided KS statistics ``max_p (p - C(p))`` and ``max_p (C(p) - p)`` over all levels.
    p_over, p_under
        Their exact one-sided p-values under calibration.
    ks_halfwidth
        Half-width of the simultaneous band: ``ks_over > ks_halfwidth`` iff
        ``p_over < alpha / 2`` (likewise under).
    alpha
        False-alarm rate of the verdict (both sides together).
    verdict
        One of :data:`VERDICTS`.
    """

    levels: FloatArray
    coverage: FloatArray
    band_lo: FloatArray
    band_hi: FloatArray
    band_level: float
    n: int
    credibility: FloatArray
    ks_over: float
    ks_under: float
    p_over: float
    p_under: float
    ks_halfwidth: float
    alpha: float
    verdict: str

    def to_record(self) -> dict[str, Any]:
        """JSON-ready mapping of every attribute (arrays as lists)."""
        return _require_finite(
            {
                "levels": _floats(self.levels),
                "coverage": _floats(self.coverage),
                "band_lo": _floats(self.band_lo),
                "band_hi": _floats(self.band_hi),
                "band_level": float(self.band_level),
                "n": int(self.n),
                "credibility": _floats(self.credibility),
                "ks_over": float(self.ks_over),
                "ks_under": float(self.ks_under),
                "p_over": float(self.p_over),
                "p_under": float(self.p_under),
                "ks_halfwidth": float(self.ks_halfwidth),
                "alpha": float(self.alpha),
                "verdict": self.verdict,
            },
            "coverage curve",
        )


def credibility(mean: Any, cov: Any, theta: Any) -> FloatArray:
    r"""
    Credibility of the truth per row: the level of the smallest ellipse that contains it.

    Parameters
    ----------
    mean, cov, theta
        ``(n, d)``, ``(n, d, d)``, ``(n, d)``: one Gaussian posterior and the truth per row.

    Returns
    -------
        ``(n,)`` :math:`u_i = F_{\chi^2_d}(d_i^2)` in ``[0, 1]``; Uniform(0, 1) for a
        calibrated posterior, near 1 for an over-confident one, near 0 for an under-confident.
    """
    mean, cov, theta = _checked(mean, cov, theta)
    return np.asarray(stats.chi2.cdf(mahalanobis_sq(mean, cov, theta), df=mean.shape[1]))


def coverage_curve(
    mean: Any,
    cov: Any,
    theta: Any,
    levels: Sequence[float] | FloatArray = DEFAULT_LEVELS,
    *,
    alpha: float = 0.01,
    band_level: float = 0.95,
) -> CoverageCurve:
    """
    Empirical coverage of the credible ellipses at every level, its band, and the verdict.

    Parameters
    ----------
    mean, cov, theta
        ``(n, d)``, ``(n, d, d)``, ``(n, d)``: one Gaussian posterior and the truth per row,
        one set of units; ``n >= MIN_ROWS``.
    levels
        Credible levels in ``(0, 1)`` at which the curve is tabulated (the verdict uses all
        levels, not only these).
    alpha
        False-alarm rate of the verdict in ``(0, 1)``, split evenly between the two sides.
    band_level
        Probability content of the pointwise binomial band in ``(0, 1)``.

    Returns
    -------
        A :class:`CoverageCurve`; its verdict is ``over-confident`` if only ``p_over <
        alpha / 2``, ``under-confident`` if only ``p_under < alpha / 2``, ``mixed`` if both,
        else ``calibrated`` (module docstring).

    Raises
    ------
    ValueError
        On shapes that do not match, non-finite values, a covariance that is not symmetric
        positive definite, fewer than ``MIN_ROWS`` rows, or a level outside ``(0, 1)``.
    """
    for name, value in (("alpha", alpha), ("band_level", band_level)):
        if not 0 < value < 1:
            msg = f"{name} must lie in (0, 1), got {value}"
            raise ValueError(msg)
    u = credibility(mean, cov, theta)
    n = len(u)
    levels_arr = np.asarray(levels, dtype=np.float64).ravel()
    frac = coverage(mean, cov, theta, levels_arr.tolist())  # raises on a level out of (0, 1)
    cov_curve = np.array([frac[float(level)] for level in levels_arr])
    tail = (1 - band_level) / 2
    band_lo = stats.binom.ppf(tail, n, levels_arr) / n
    band_hi = stats.binom.ppf(1 - tail, n, levels_arr) / n

    # Sup over all levels: the ECDF of u jumps at each sorted u_(i).
    u_sorted = np.sort(u)
    rank = np.arange(1, n + 1)
    ks_under = float(max(np.max(rank / n - u_sorted), 0.0))
    ks_over = float(max(np.max(u_sorted - (rank - 1) / n), 0.0))
    p_under = float(stats.ksone.sf(ks_under, n))
    p_over = float(stats.ksone.sf(ks_over, n))
    over, under = p_over < alpha / 2, p_under < alpha / 2
    verdict = (
        "mixed"
        if over and under
        else "over-confident"
        if over
        else "under-confident"
        if under
        else "calibrated"
    )
    return CoverageCurve(
        levels=levels_arr,
        coverage=cov_curve,
        band_lo=band_lo,
        band_hi=band_hi,
        band_level=float(band_level),
        n=n,
        credibility=u,
        ks_over=ks_over,
        ks_under=ks_under,
        p_over=p_over,
        p_under=p_under,
        ks_halfwidth=float(stats.ksone.isf(alpha / 2, n)),
        alpha=float(alpha),
        verdict=verdict,
    )


# --------------------------------------------------------------------------- SBC ranks


@dataclass(frozen=True)
class RankHistogram:
    """
    Simulation-based-calibration ranks of the truth, per parameter.

    Attributes
    ----------
    ranks
        ``(n, d)`` integers in ``[0, n_samples]``: how many posterior draws of parameter
        ``j`` of row ``i`` lie below its truth.
    n_samples
        Posterior draws per row.
    counts
        ``(d, n_bins)`` histogram of the ranks; bin ``b`` holds the ranks ``r`` with
        ``floor(r * n_bins / (n_samples + 1)) == b``.
    expected
        ``(n_bins,)`` expected count per bin under calibration (ranks uniform on
        ``0..n_samples``).
    band_lo, band_hi
        ``(n_bins,)`` central 99% interval of ``Binomial(n, expected / n)`` per bin.
    chi2, p_values
        ``(d,)`` Pearson chi-square statistic of the counts against *expected*
        (``n_bins - 1`` degrees of freedom) and its p-value. Over-confidence shows as a U
        (truths in the outer bins), under-confidence as a central peak.
    """

    ranks: IntArray
    n_samples: int
    counts: IntArray
    expected: FloatArray
    band_lo: FloatArray
    band_hi: FloatArray
    chi2: FloatArray
    p_values: FloatArray

    def to_record(self) -> dict[str, Any]:
        """JSON-ready mapping; the per-row ranks are left out (the counts summarise them)."""
        return _require_finite(
            {
                "n_samples": int(self.n_samples),
                "counts": np.asarray(self.counts).astype(int).tolist(),
                "expected": _floats(self.expected),
                "band_lo": _floats(self.band_lo),
                "band_hi": _floats(self.band_hi),
                "chi2": _floats(self.chi2),
                "p_values": _floats(self.p_values),
            },
            "SBC",
        )


def _rank_histogram(ranks: IntArray, n_samples: int, n_bins: int) -> RankHistogram:
    n, d = ranks.shape
    n_ranks = n_samples + 1
    bin_of = lambda r: (np.asarray(r) * n_bins) // n_ranks  # noqa: E731
    prob = np.bincount(bin_of(np.arange(n_ranks)), minlength=n_bins) / n_ranks
    counts = np.stack([np.bincount(bin_of(ranks[:, j]), minlength=n_bins) for j in range(d)])
    expected = n * prob
    chi2 = np.sum((counts - expected) ** 2 / expected, axis=1)
    return RankHistogram(
        ranks=ranks,
        n_samples=n_samples,
        counts=counts,
        expected=expected,
        band_lo=stats.binom.ppf(0.005, n, prob),
        band_hi=stats.binom.ppf(0.995, n, prob),
        chi2=chi2,
        p_values=stats.chi2.sf(chi2, df=n_bins - 1),
    )


def sbc_ranks(
    mean: Any,
    cov: Any,
    theta: Any,
    n_samples: int,
    rng: np.random.Generator,
    *,
    n_bins: int | None = None,
) -> RankHistogram:
    """
    Ranks of each true parameter among draws of its posterior (SBC), with their histogram.

    Parameters
    ----------
    mean, cov, theta
        ``(n, d)``, ``(n, d, d)``, ``(n, d)``: one Gaussian posterior and the truth per row;
        ``n >= MIN_ROWS``.
    n_samples
        Draws per row; the ranks take ``n_samples + 1`` values.
    rng
        Source of the draws.
    n_bins
        Histogram bins, at most ``n_samples + 1``; by default ``min(20, n // 5,
        n_samples + 1)`` (at least 2) so that each bin expects about five rows or more.

    Returns
    -------
        A :class:`RankHistogram`: uniform ranks for a calibrated posterior.

    Raises
    ------
    ValueError
        On bad inputs as :func:`coverage_curve`, ``n_samples < 1`` or a bad *n_bins*.

    Notes
    -----
    Talts et al. 2018, arXiv:1804.06788. The rank of parameter ``j`` tests the marginal
    ``N(mean[i, j], cov[i, j, j])``.
    """
    mean, cov, theta = _checked(mean, cov, theta)
    samples = _draw(mean, cov, n_samples, rng)  # (n_samples, n, d)
    ranks = np.sum(samples < theta[None], axis=0)  # (n, d)
    n = len(mean)
    if n_bins is None:
        n_bins = max(2, min(20, n // 5, n_samples + 1))
    if not 2 <= n_bins <= n_samples + 1:
        msg = f"n_bins must lie in [2, n_samples + 1 = {n_samples + 1}], got {n_bins}"
        raise ValueError(msg)
    return _rank_histogram(ranks, int(n_samples), int(n_bins))


# --------------------------------------------------------------------------- TARP


@dataclass(frozen=True)
class TarpCurve:
    """
    TARP expected coverage probability against credibility level.

    Attributes
    ----------
    alpha
        ``(m,)`` credibility levels, increasing from 0 to 1.
    ecp
        ``(m,)`` expected coverage probability at each level; the diagonal when calibrated.
        With references far from the posteriors, TARP sees a width error much as a 1-d PIT
        does: over-confidence is an S above the diagonal at low levels and below it at high
        ones, under-confidence the reverse; it is less sensitive to a pure width error than
        :func:`coverage_curve` (on 400 tiles with the covariance halved, ``max_deviation``
        is about 0.11 against 0.25 for the coverage curve).
    max_deviation
        ``max |ecp - alpha|``: the KS distance of the TARP credibilities from uniform.
    p_value
        Two-sided KS p-value of *max_deviation* for ``n`` rows (:data:`scipy.stats.kstwo`),
        approximate: the credibilities are discrete in steps of ``1 / n_samples``.
    n_samples
        Posterior draws per row.
    """

    alpha: FloatArray
    ecp: FloatArray
    max_deviation: float
    p_value: float
    n_samples: int

    def to_record(self) -> dict[str, Any]:
        """JSON-ready mapping of every attribute (arrays as lists)."""
        return _require_finite(
            {
                "alpha": _floats(self.alpha),
                "ecp": _floats(self.ecp),
                "max_deviation": float(self.max_deviation),
                "p_value": float(self.p_value),
                "n_samples": int(self.n_samples),
            },
            "TARP",
        )


def tarp_coverage(
    mean: Any, cov: Any, theta: Any, n_samples: int, rng: np.random.Generator
) -> TarpCurve:
    """
    TARP expected coverage of the posteriors, by :func:`tarp.get_tarp_coverage`.

    Parameters
    ----------
    mean, cov, theta
        ``(n, d)``, ``(n, d, d)``, ``(n, d)``: one Gaussian posterior and the truth per row;
        ``n >= MIN_ROWS``.
    n_samples
        Posterior draws per row.
    rng
        Source of the draws and of the reference points (one per row, uniform in the box
        spanned by the truths, which ``tarp`` maps to the unit square with ``norm=True``).

    Returns
    -------
        A :class:`TarpCurve`, its curve tabulated at ``n`` (at most 1000) levels plus the
        end points (0, 0) and (1, 1).

    Raises
    ------
    ValueError
        On bad inputs as :func:`coverage_curve` or ``n_samples < 1``.

    Notes
    -----
    Lemos, Coogan et al. 2023, arXiv:2302.03026. ``tarp`` 0.1.1 calls ``np.random.seed``;
    the global numpy random state is restored afterwards, and all randomness comes from
    *rng* (the references are passed in, so ``tarp`` draws nothing). Its bootstrap is not
    used: it overwrites the samples in place.
    """
    import tarp  # type: ignore[import-untyped]  # tarp ships no type information

    mean, cov, theta = _checked(mean, cov, theta)
    samples = _draw(mean, cov, n_samples, rng)  # (n_samples, n, d), tarp's layout
    n, d = mean.shape
    references = rng.uniform(size=(n, d))
    n_levels = min(n, 1000)
    state = np.random.get_state()  # noqa: NPY002  (restored: tarp reseeds the global one)
    try:
        ecp, alpha = tarp.get_tarp_coverage(
            samples,
            theta.copy(),
            references=references,
            metric="euclidean",
            num_alpha_bins=n_levels,
            norm=True,
            bootstrap=False,
            seed=0,
        )
    finally:
        np.random.set_state(state)  # noqa: NPY002
    # tarp tabulates between the smallest and largest credibility; the ECDF is 0 below and
    # 1 above them.
    alpha = np.concatenate([[0.0], np.asarray(alpha, dtype=np.float64), [1.0]])
    ecp = np.concatenate([[0.0], np.asarray(ecp, dtype=np.float64), [1.0]])
    max_dev = float(np.max(np.abs(ecp - alpha)))
    return TarpCurve(
        alpha=alpha,
        ecp=ecp,
        max_deviation=max_dev,
        p_value=float(stats.kstwo.sf(max_dev, n)),
        n_samples=int(n_samples),
    )


# --------------------------------------------------------------------------- together


@dataclass(frozen=True)
class CalibrationReport:
    """
    The calibration diagnostics of one set of posteriors.

    Attributes
    ----------
    coverage
        The coverage curve and the verdict.
    sbc
        The per-parameter rank histograms.
    tarp
        The TARP curve.
    param_names
        Names of the ``d`` parameters.
    """

    coverage: CoverageCurve
    sbc: RankHistogram
    tarp: TarpCurve
    param_names: tuple[str, ...]

    @property
    def verdict(self) -> str:
        """The verdict of the coverage curve, one of :data:`VERDICTS`."""
        return self.coverage.verdict

    def to_record(self) -> dict[str, Any]:
        """
        JSON-ready mapping, no NaN.

        Returns
        -------
            ``{"verdict", "n", "params", "coverage", "sbc", "tarp"}``; the last three are the
            ``to_record()`` of :class:`CoverageCurve`, :class:`RankHistogram` and
            :class:`TarpCurve`.
        """
        return {
            "verdict": self.verdict,
            "n": int(self.coverage.n),
            "params": list(self.param_names),
            "coverage": self.coverage.to_record(),
            "sbc": self.sbc.to_record(),
            "tarp": self.tarp.to_record(),
        }

    def figure_arrays(self) -> dict[str, Any]:
        """Keyword arguments of :func:`lensing_core.plotting.calibration.calibration_figure`."""
        return {
            "levels": self.coverage.levels,
            "coverage": self.coverage.coverage,
            "band_lo": self.coverage.band_lo,
            "band_hi": self.coverage.band_hi,
            "ks_halfwidth": self.coverage.ks_halfwidth,
            "tarp_alpha": self.tarp.alpha,
            "tarp_ecp": self.tarp.ecp,
            "rank_counts": self.sbc.counts,
            "rank_expected": self.sbc.expected,
            "rank_band_lo": self.sbc.band_lo,
            "rank_band_hi": self.sbc.band_hi,
            "param_labels": self.param_names,
            "verdict": self.verdict,
        }


def calibration_diagnostics(
    mean: Any,
    cov: Any,
    theta: Any,
    *,
    rng: np.random.Generator,
    n_samples: int = 499,
    levels: Sequence[float] | FloatArray = DEFAULT_LEVELS,
    alpha: float = 0.01,
    param_names: Sequence[str] | None = None,
) -> CalibrationReport:
    """
    Coverage curve with verdict, SBC rank histograms and TARP curve of Gaussian posteriors.

    Parameters
    ----------
    mean, cov, theta
        ``(n, d)``, ``(n, d, d)``, ``(n, d)``: one Gaussian posterior and the truth per row
        (e.g. the test tiles, or the fiducial realisations), one set of units;
        ``n >= MIN_ROWS``.
    rng
        Source of the posterior draws of SBC and TARP (the coverage curve is exact).
    n_samples
        Posterior draws per row for SBC and TARP.
    levels
        Credible levels of the tabulated coverage curve.
    alpha
        False-alarm rate of the verdict (:func:`coverage_curve`).
    param_names
        ``d`` names of the parameters; ``p0, p1, ...`` by default.

    Returns
    -------
        A :class:`CalibrationReport`.

    Raises
    ------
    ValueError
        On bad inputs (:func:`coverage_curve`) or a wrong number of *param_names*.
    """
    mean, cov, theta = _checked(mean, cov, theta)
    d = mean.shape[1]
    names = tuple(param_names) if param_names is not None else tuple(f"p{j}" for j in range(d))
    if len(names) != d:
        msg = f"expected {d} param_names, got {len(names)}: {names}"
        raise ValueError(msg)
    return CalibrationReport(
        coverage=coverage_curve(mean, cov, theta, levels, alpha=alpha),
        sbc=sbc_ranks(mean, cov, theta, n_samples, rng),
        tarp=tarp_coverage(mean, cov, theta, n_samples, rng),
        param_names=names,
    )
