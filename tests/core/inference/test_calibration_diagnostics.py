"""Calibration diagnostics on exact Gaussian posteriors, and on ones too narrow or too wide.

Toy: per tile a random mean and a random 2x2 covariance, the truth drawn from that Gaussian,
so the posterior ``N(mean, cov)`` is exactly calibrated; reporting ``cov / 2`` makes it
over-confident, ``2 cov`` under-confident. With ``n = 400`` tiles the one-sided KS
statistics of the credibilities are about 0.25 for both (``1 - sqrt(1 - p)`` and
``2p - p^2`` against ``p``), three times the 0.081 critical value at ``alpha / 2 = 0.005``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from lensing_core.inference.calibration import (
    MIN_ROWS,
    calibration_diagnostics,
    coverage_curve,
    credibility,
    sbc_ranks,
    tarp_coverage,
)
from lensing_core.plotting.calibration import calibration_figure
from lensing_core.plotting.figures import figure_to_png_bytes

N_TILES = 400
N_SAMPLES = 299


def exact_posteriors(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means, covariances and truths drawn from them: an exactly calibrated posterior."""
    mean = rng.normal([0.3, 0.8], [0.1, 0.1], size=(n, 2))
    a = rng.normal(scale=0.03, size=(n, 2, 2))
    shape = a @ np.swapaxes(a, 1, 2) + np.diag([0.01, 0.02]) ** 2  # varied shapes, PD
    # widths varying tenfold between tiles: a diagnostic blind to the per-tile covariance
    # sees a mixture of too-narrow and too-wide posteriors
    cov = shape * 10 ** rng.uniform(-1, 1, size=(n, 1, 1))
    theta = mean + np.einsum("nij,nj->ni", np.linalg.cholesky(cov), rng.standard_normal((n, 2)))
    return mean, cov, theta


@pytest.fixture(scope="module")
def toy() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return exact_posteriors(N_TILES, np.random.default_rng(20261114))


@pytest.fixture(scope="module")
def reports(toy):
    mean, cov, theta = toy
    return {
        scale: calibration_diagnostics(
            mean,
            scale * cov,
            theta,
            rng=np.random.default_rng(7),
            n_samples=N_SAMPLES,
            param_names=("omega_m", "s8"),
        )
        for scale in (1.0, 0.5, 2.0)
    }


@pytest.mark.parametrize(
    ("scale", "verdict"),
    [(1.0, "calibrated"), (0.5, "over-confident"), (2.0, "under-confident")],
)
def test_verdict_exact_halved_doubled(reports, scale, verdict):
    assert reports[scale].verdict == verdict


def test_coverage_curve_follows_the_diagonal_only_when_exact(reports):
    exact, halved, doubled = (reports[s].coverage for s in (1.0, 0.5, 2.0))
    # the exact curve inside its pointwise 95% band at nearly all levels
    inside = (exact.band_lo <= exact.coverage) & (exact.coverage <= exact.band_hi)
    assert inside.mean() >= 0.9
    assert exact.p_over > 0.05
    assert exact.p_under > 0.05
    # over-confident: truths outside the ellipses, coverage below the band
    assert np.mean(halved.coverage < halved.band_lo) > 0.5
    assert halved.ks_over > halved.ks_halfwidth
    assert halved.ks_over == pytest.approx(0.25, abs=0.06)
    # under-confident: coverage above the band
    assert np.mean(doubled.coverage > doubled.band_hi) > 0.5
    assert doubled.ks_under > doubled.ks_halfwidth
    assert doubled.ks_under == pytest.approx(0.25, abs=0.06)


def test_coverage_curve_matches_known_values():
    # one tile per distance, d2 = -2 ln(1 - u): credibility u exactly
    u = np.linspace(0.05, 0.95, 10)
    mean = np.zeros((10, 2))
    cov = np.broadcast_to(np.diag([4.0, 0.25]), (10, 2, 2))
    theta = np.stack([2.0 * np.sqrt(-2 * np.log1p(-u)), np.zeros(10)], axis=1)
    np.testing.assert_allclose(credibility(mean, cov, theta), u, atol=1e-12)
    curve = coverage_curve(mean, cov, theta, levels=[0.1, 0.5, 0.96])
    np.testing.assert_allclose(curve.coverage, [0.1, 0.5, 1.0])
    # band: central 95% of Binomial(10, p) / 10
    np.testing.assert_allclose(curve.band_lo, stats.binom.ppf(0.025, 10, [0.1, 0.5, 0.96]) / 10)
    np.testing.assert_allclose(curve.band_hi, stats.binom.ppf(0.975, 10, [0.1, 0.5, 0.96]) / 10)
    assert curve.ks_under == pytest.approx(0.05)
    assert curve.ks_over == pytest.approx(0.05)
    assert curve.verdict == "calibrated"


def test_mixed_when_both_sides_are_off():
    rng = np.random.default_rng(3)
    mean, cov, theta = exact_posteriors(N_TILES, rng)
    scale = np.where(np.arange(N_TILES) % 2 == 0, 0.25, 4.0)[:, None, None]
    assert coverage_curve(mean, scale * cov, theta).verdict == "mixed"


def test_false_alarm_rate_of_calibrated_verdict_is_small():
    # alpha = 0.01: over 50 independent exact sets, 0.5 false alarms expected, P(> 2) = 0.014;
    # a rule at alpha = 0.1 expects 5
    verdicts = [
        coverage_curve(*exact_posteriors(100, np.random.default_rng(seed))).verdict
        for seed in range(50)
    ]
    assert sum(v != "calibrated" for v in verdicts) <= 2


def test_sbc_ranks_uniform_u_shaped_peaked(reports):
    exact, halved, doubled = (reports[s].sbc for s in (1.0, 0.5, 2.0))
    assert exact.ranks.shape == (N_TILES, 2)
    assert exact.ranks.min() >= 0
    assert exact.ranks.max() <= N_SAMPLES
    assert exact.counts.sum(axis=1).tolist() == [N_TILES, N_TILES]
    assert np.all(exact.p_values > 0.01)
    assert np.all(halved.p_values < 1e-4)
    assert np.all(doubled.p_values < 1e-4)
    n_bins = exact.counts.shape[1]
    outer = [0, n_bins - 1]
    middle = slice(n_bins // 4, n_bins - n_bins // 4)
    # halved: truths in the tails of the draws, the outer bins overfull (a U)
    assert np.all(halved.counts[:, outer] > halved.band_hi[outer])
    assert np.all(halved.counts[:, middle].mean(axis=1) < halved.expected[middle].mean())
    # doubled: truths in the bulk, a central peak and empty-ish outer bins
    assert np.all(doubled.counts[:, outer] < doubled.expected[outer])
    assert np.all(doubled.counts[:, middle].mean(axis=1) > doubled.expected[middle].mean())


def test_sbc_expected_counts_and_band():
    mean, cov, theta = exact_posteriors(50, np.random.default_rng(1))
    hist = sbc_ranks(mean, cov, theta, 9, np.random.default_rng(2), n_bins=4)
    # ranks 0..9 in 4 bins: {0,1,2}, {3,4}, {5,6,7}, {8,9}
    np.testing.assert_allclose(hist.expected, 50 * np.array([3, 2, 3, 2]) / 10)
    np.testing.assert_allclose(hist.band_hi, stats.binom.ppf(0.995, 50, [0.3, 0.2, 0.3, 0.2]))


def test_sbc_is_reproducible_from_the_rng(toy):
    a = sbc_ranks(*toy, 99, np.random.default_rng(5))
    b = sbc_ranks(*toy, 99, np.random.default_rng(5))
    np.testing.assert_array_equal(a.ranks, b.ranks)


def test_tarp_near_diagonal_only_when_exact(reports):
    exact, halved, doubled = (reports[s].tarp for s in (1.0, 0.5, 2.0))
    assert exact.alpha[0] == 0.0
    assert exact.alpha[-1] == 1.0
    assert np.all(np.diff(exact.alpha) >= 0)
    assert np.all(np.diff(exact.ecp) >= -1e-12)
    assert exact.max_deviation < 0.09
    assert exact.p_value > 0.001

    def deviation(curve, level):
        return np.interp(level, curve.alpha, curve.ecp) - level

    # Each threshold below holds for each of 30 seeds of this toy (n = 400, 299 draws). TARP
    # with random references sees a width error as a 1-d PIT does: an S about the diagonal.
    assert abs(deviation(exact, 0.15)) < 0.06
    assert abs(deviation(exact, 0.85)) < 0.06
    assert deviation(halved, 0.15) > 0
    assert deviation(halved, 0.85) < -0.03
    assert deviation(doubled, 0.15) < 0
    assert deviation(doubled, 0.85) > 0.04
    for off in (halved, doubled):
        assert off.max_deviation > 0.06


def test_tarp_leaves_numpy_global_state_alone(toy):
    # tarp 0.1.1 reseeds numpy's global generator; the wrapper must restore it
    np.random.seed(12345)  # noqa: NPY002  (any state but the one tarp sets)
    before = np.random.get_state(legacy=False)  # noqa: NPY002
    tarp_coverage(*toy, 49, np.random.default_rng(0))
    after = np.random.get_state(legacy=False)  # noqa: NPY002
    np.testing.assert_array_equal(after["state"]["key"], before["state"]["key"])
    assert after["state"]["pos"] == before["state"]["pos"]


def test_record_is_json_ready(reports):
    record = reports[0.5].to_record()
    assert set(record) == {"verdict", "n", "params", "coverage", "sbc", "tarp"}
    assert record["verdict"] == "over-confident"
    assert record["n"] == N_TILES
    assert record["params"] == ["omega_m", "s8"]
    assert len(record["coverage"]["credibility"]) == N_TILES
    text = json.dumps(record, allow_nan=False)
    assert json.loads(text)["coverage"]["verdict"] == "over-confident"


def test_figure_renders_to_png(reports):
    fig = calibration_figure(**reports[1.0].figure_arrays(), title="toy")
    assert len(fig.axes) == 4
    png = figure_to_png_bytes(fig)
    assert png.startswith(b"\x89PNG")


def test_figure_rejects_mismatched_arrays(reports):
    arrays = reports[1.0].figure_arrays()
    arrays["band_lo"] = arrays["band_lo"][:-1]
    with pytest.raises(ValueError, match="band_lo"):
        calibration_figure(**arrays)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda m, c, t: (m, c, t[:-1]), "of one n and d"),
        (lambda m, c, t: (m[:, :1], c, t), "of one n and d"),
        (lambda m, c, t: (m, c[:, :1], t), "of one n and d"),
        (lambda m, c, t: (m[: MIN_ROWS - 1], c[: MIN_ROWS - 1], t[: MIN_ROWS - 1]), "at least"),
        (lambda m, c, t: (m, c * np.array([1.0, -1.0])[None, :, None], t), "symmetric"),
        (lambda m, c, t: (m, c * np.array([[1.0, 1.0], [1.0, -1.0]]), t), "positive definite"),
        (lambda m, c, t: (m, np.ones_like(c) * 0.01, t), "positive definite"),
        (lambda m, c, t: (m, c, np.where(np.arange(len(t))[:, None] == 3, np.nan, t)), "row 3"),
    ],
)
def test_bad_input_raises(toy, mutate, match):
    mean, cov, theta = mutate(*toy)
    with pytest.raises(ValueError, match=match):
        calibration_diagnostics(mean, cov, theta, rng=np.random.default_rng(0), n_samples=9)


def test_bad_options_raise(toy):
    with pytest.raises(ValueError, match="levels must lie in"):
        coverage_curve(*toy, levels=[0.5, 1.0])
    with pytest.raises(ValueError, match="alpha"):
        coverage_curve(*toy, alpha=0.0)
    with pytest.raises(ValueError, match="n_samples"):
        sbc_ranks(*toy, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="n_bins"):
        sbc_ranks(*toy, 9, np.random.default_rng(0), n_bins=11)
    with pytest.raises(ValueError, match="param_names"):
        calibration_diagnostics(*toy, rng=np.random.default_rng(0), param_names=("a",))
