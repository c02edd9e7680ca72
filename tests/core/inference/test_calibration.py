"""Calibration of a trained pipeline on a toy whose posterior is known.

Toy suite: ``N_SIMS`` sims with (Omega_m, S8) uniform in a box, the fiducial sim 109 among
them. In box units ``x = ((Omega_m, S8) - X_CENTRE) / X_HALF``, uniform in [-1, 1]^2, every
pixel of bin ``b`` of a tile is ``(MIX @ x)_b + TILE_NOISE * e_b + PIXEL_NOISE * n``: ``e_b``
one standard normal per (tile, bin), ``n`` one per pixel. The bin means of a tile are then a
Gaussian measurement of ``MIX @ x`` (the pixel term adds only ``PIXEL_NOISE / 128`` to them):
the exact posterior is Gaussian with covariance ``TILE_NOISE^2 (MIX^T MIX)^-1 = 0.12^2 I`` in
``x``, a fifth of the prior's standard deviation, truncated to the box. Uncertain, not exact.

The real chain (``train_compressor``, ``train_npe``, ``fom_report``) runs once on it. The
bound: the test tiles have independent noise and the trained networks are fixed, so the
number of them inside a calibrated posterior's ``p`` ellipse is Binomial(n_test, p); the
reported coverage must lie in the exact two-sided acceptance region that keeps all but
``ALPHA = 1e-3`` of it. The split is by simulation: the test set is 16 whole sims of the 149
(192 tiles, none of whose sims the compressor or the NPE saw), and the region is [0.568,
0.786] at 68% and [0.891, 0.995] at 95%: room for an imperfect fit, yet a posterior whose
covariance is divided by 4 covers ``1 - exp(-chi2_p / 8)``, 0.25 at 68% and 0.53 at 95%, far
outside.
Calibration alone would accept the prior itself, so the posterior's width is also held
between the exact posterior's and the prior's.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from lensing_core.dataset.normalization import load_norm_stats, normalize_theta
from lensing_core.dataset.parquet import write_config_shards
from lensing_core.dataset.splits import load_split
from lensing_core.inference.compressor import load_compressor
from lensing_core.inference.config import CompressorConfig, NPEConfig
from lensing_core.inference.fom import coverage
from lensing_core.inference.npe import load_npe
from lensing_core.inference.pipeline import fom_report, open_config, train_compressor, train_npe
from lensing_core.sims.catalog import FIDUCIAL_PARAMS, FIDUCIAL_SIM_ID, SimCatalog, s8_from
from lensing_core.storage import DataRoot

LMAX, NOISE = 200, "des_y3"
N_SIMS = 150  # sims 1..150: 149 besides the fiducial, 16 of them (192 tiles) for the test
N_TILES, N_BINS, N_PIX = 12, 4, 128
X_CENTRE, X_HALF = np.array([0.30, 0.80]), np.array([0.08, 0.18])  # Omega_m, S8 box
MIX = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -1.0]])  # bin levels = MIX @ x
POSTERIOR_SD_X = 0.12  # exact posterior standard deviation per axis of x (MIX^T MIX = 3 I)
TILE_NOISE, PIXEL_NOISE = POSTERIOR_SD_X * math.sqrt(3.0), 0.5
LEVELS = (0.68, 0.95)
ALPHA = 1e-3
SHRINK = 4.0  # the over-confident posterior: covariance / SHRINK

COMPRESSOR = CompressorConfig(
    backbone="test_efficientnet", batch_size=16, max_epochs=1, lr=3e-3, warmup_epochs=0.25
)
# one seed: the report's calibration is then that of this one network, which the tests redo
NPE = NPEConfig(
    hidden=32, lr=5e-3, batch_size=16, max_epochs=10, patience=5, lr_decay_patience=2, n_seeds=1
)


def _toy_catalog(rng: np.random.Generator) -> SimCatalog:
    """Sims 1..N_SIMS, (Omega_m, S8) uniform in the box, other parameters the fiducial's."""
    entries: dict[int, dict[str, float]] = {FIDUCIAL_SIM_ID: dict(FIDUCIAL_PARAMS)}
    for sim_id in range(1, N_SIMS + 1):
        if sim_id != FIDUCIAL_SIM_ID:
            omega_m, s8 = X_CENTRE + X_HALF * rng.uniform(-1.0, 1.0, 2)
            sigma_8 = s8 / math.sqrt(omega_m / 0.3)
            s8 = s8_from(omega_m, sigma_8)
            entries[sim_id] = {**FIDUCIAL_PARAMS, "Omega_m": omega_m, "sigma_8": sigma_8, "S8": s8}
    return SimCatalog(entries, name="calibration toy")


def _toy_tiles(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(12, 4, 128, 128)`` float32 tiles of one sim at (Omega_m, S8) *theta*."""
    x = (theta - X_CENTRE) / X_HALF
    levels = MIX @ x + TILE_NOISE * rng.standard_normal((N_TILES, N_BINS))
    tiles = rng.standard_normal((N_TILES, N_BINS, N_PIX, N_PIX), dtype=np.float32)
    tiles *= PIXEL_NOISE
    tiles += levels[:, :, None, None].astype(np.float32)
    return tiles


def _binomial_region(n: int, p: float) -> tuple[float, float]:
    """Fractions ``[k_lo / n, k_hi / n]`` with ``P(K < k_lo)``, ``P(K > k_hi) <= ALPHA / 2``."""
    k_lo, k_hi = stats.binom.ppf(ALPHA / 2, n, p), stats.binom.isf(ALPHA / 2, n, p)
    assert stats.binom.cdf(k_lo - 1, n, p) <= ALPHA / 2 < stats.binom.cdf(k_lo, n, p)
    assert stats.binom.sf(k_hi, n, p) <= ALPHA / 2
    return float(k_lo) / n, float(k_hi) / n


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory: pytest.TempPathFactory) -> DataRoot:
    """The toy's tiles and shards, then the chain run once: compressor, NPE, report."""
    rng = np.random.default_rng(20240611)
    root = DataRoot(tmp_path_factory.mktemp("calibration"))
    catalog = _toy_catalog(rng)
    for sim_id in catalog.sim_ids:
        meta = {
            "sim_id": sim_id,
            "lmax": LMAX,
            "scheme": "belts",
            "noise_convention": "per_component",
        }
        tiles = _toy_tiles(catalog.theta([sim_id])[0], rng)
        root.write_tiles(sim_id, LMAX, {NOISE: tiles}, meta)
    report = write_config_shards(root, catalog, LMAX, NOISE, catalog.sim_ids, strict=True)
    assert report.rows == N_TILES * N_SIMS
    train_compressor(root, LMAX, NOISE, COMPRESSOR, accelerator="cpu")
    train_npe(root, LMAX, NOISE, NPE, device="cpu")
    fom_report(root, LMAX, NOISE, device="cpu")
    return root


@pytest.fixture(scope="module")
def posteriors(trained_root: DataRoot) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised posterior means, covariances and truths of the test tiles, from the files."""
    files = trained_root.compressor(LMAX, NOISE)
    table, _ = open_config(trained_root, LMAX, NOISE)
    split = load_split(files.split)
    compressor = load_compressor(files.best)
    npe = load_npe(trained_root.npe(LMAX, NOISE).checkpoint)
    tiles = torch.from_numpy(np.asarray(table.tiles[split.test], dtype=np.float32))
    with torch.no_grad():
        mean, cov = npe.model.mean_cov(compressor.compress(tiles))
    theta = normalize_theta(table.theta[split.test], load_norm_stats(files.norm_stats))
    return mean.double().numpy(), cov.double().numpy(), np.asarray(theta, dtype=np.float64)


def _calibration(root: DataRoot) -> dict[str, float]:
    return json.loads(root.npe(LMAX, NOISE).fom_result.read_text())["calibration"]


def test_reported_coverage_is_within_the_binomial_bound(trained_root: DataRoot) -> None:
    """fom_result.json's coverage_68 and coverage_95 lie in their ALPHA binomial regions."""
    calib = _calibration(trained_root)
    n_test = calib["n_test"]
    assert n_test == len(load_split(trained_root.compressor(LMAX, NOISE).split).test) == 192
    for level in LEVELS:
        lo, hi = _binomial_region(n_test, level)
        measured = calib[f"coverage_{round(100 * level)}"]
        assert lo <= measured <= hi, (
            f"coverage at {level:.0%} is {measured:.3f} over {n_test} test tiles, outside the "
            f"binomial acceptance region [{lo:.3f}, {hi:.3f}] (alpha {ALPHA})"
        )


def test_posterior_is_informative_and_no_narrower_than_the_truth(
    trained_root: DataRoot, posteriors: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    """Median posterior sd: at least 0.75 of the exact one, at most half the prior's (1)."""
    _, cov, _ = posteriors
    norm = load_norm_stats(trained_root.compressor(LMAX, NOISE).norm_stats)
    exact_sd = POSTERIOR_SD_X * X_HALF / norm.theta_std  # normalised units
    median_sd = np.median(np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1)), axis=0)
    assert np.all(median_sd >= 0.75 * exact_sd), (median_sd, exact_sd)
    assert np.all(median_sd <= 0.5), median_sd


def test_overconfident_posterior_fails_the_same_bound(
    trained_root: DataRoot, posteriors: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    """The saved networks reproduce the report; their covariance / 4 falls outside the bound."""
    mean, cov, theta = posteriors
    calib = _calibration(trained_root)
    # without the library: the chi2_2 CDF of a squared Mahalanobis distance is 1 - exp(-d2 / 2)
    diff = theta - mean
    d2 = np.einsum("ni,nij,nj->n", diff, np.linalg.inv(cov), diff)
    honest = coverage(mean, cov, theta, LEVELS)
    for level in LEVELS:
        assert honest[level] == pytest.approx(calib[f"coverage_{round(100 * level)}"], abs=1e-9)
        assert honest[level] == pytest.approx(np.mean(1 - np.exp(-d2 / 2) <= level), abs=1e-9)
    overconfident = coverage(mean, cov / SHRINK, theta, LEVELS)
    for level in LEVELS:
        lo, hi = _binomial_region(len(theta), level)
        expected = 1 - math.exp(-stats.chi2.ppf(level, 2) / (2 * SHRINK))
        assert not lo <= overconfident[level] <= hi, (
            f"a posterior with its covariance / {SHRINK:g} covers {overconfident[level]:.3f} "
            f"at {level:.0%} (about {expected:.2f} expected), inside [{lo:.3f}, {hi:.3f}]"
        )
