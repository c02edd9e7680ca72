"""Tests of the compressor's ``"vmim"`` loss: an analytic linear-Gaussian toy and the module.

The toy checks the objective itself: a linear compressor ``t = W x`` and the density head
trained jointly on :func:`vmim_nll` must find the exact posterior of a linear-Gaussian model.
The module tests run timm's tiny ``test_efficientnet`` on the 32 x 32 toy tiles of
:mod:`tests.core.inference.test_compressor`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch
from torch import nn

from lensing_core.dataset.loader import TileTable
from lensing_core.dataset.normalization import NormStats
from lensing_core.dataset.splits import Split
from lensing_core.inference.compressor import (
    CompressorModule,
    build_vmim_head,
    load_compressor,
    vmim_nll,
)
from lensing_core.inference.config import (
    COMPRESSOR_LOSSES,
    CompressorConfig,
    TrainingSettings,
)
from lensing_core.inference.npe import GaussianNPE
from lensing_core.inference.training import CompressorResult, evaluate_split, fit_compressor
from tests.core.inference.test_compressor import tiny_config

# --- the linear-Gaussian toy --------------------------------------------------------------------

N_DATA = 8  # dimensions of the data vector x
N_TRAIN, N_TEST = 20_000, 4_000


def linear_gaussian_model(
    rng: np.random.Generator,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """
    Response ``A`` ``(8, 2)`` and noise covariance ``N`` ``(8, 8)`` of ``x = A theta + n``.

    The second column of ``A`` leans on the first, and the noise is diagonal with unequal
    variances: the two parameters get unequal, correlated information (with the seed used
    below, posterior standard deviations 0.23 and 0.52, correlation -0.66).
    """
    a = rng.standard_normal((N_DATA, 2))
    response = np.column_stack([1.5 * a[:, 0], 0.7 * a[:, 0] + 0.5 * a[:, 1]])
    noise_cov = np.diag(rng.uniform(0.5, 1.5, N_DATA) ** 2)
    return response, noise_cov


def draw_pairs(
    rng: np.random.Generator,
    response: npt.NDArray[np.float64],
    noise_cov: npt.NDArray[np.float64],
    n: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(x (n, 8), theta (n, 2))`` with ``theta ~ N(0, I)``, ``x = A theta + N(0, N)``."""
    theta = rng.standard_normal((n, 2))
    noise = rng.multivariate_normal(np.zeros(N_DATA), noise_cov, n)
    return theta @ response.T + noise, theta


@dataclass(frozen=True)
class ToyFit:
    """Analytic posterior of the toy and what VMIM learned, on held-out data (theta units)."""

    cov: npt.NDArray[np.float64]  # (2, 2), the same for every x
    mean: npt.NDArray[np.float64]  # (n_test, 2)
    learned_cov: npt.NDArray[np.float64]  # (2, 2), averaged over the held-out x
    learned_mean: npt.NDArray[np.float64]  # (n_test, 2)


def fit_toy() -> ToyFit:
    """
    Train ``t = W x + b`` and the density head jointly on :func:`vmim_nll` (Adam).

    The exact posterior of ``theta | x`` is Gaussian with covariance
    ``C = (I + A^T N^-1 A)^-1``, the same for every ``x``, and mean ``C A^T N^-1 x``.
    """
    rng = np.random.default_rng(4)
    response, noise_cov = linear_gaussian_model(rng)
    precision = np.linalg.inv(noise_cov)
    cov = np.linalg.inv(np.eye(2) + response.T @ precision @ response)
    x_train, theta_train = draw_pairs(rng, response, noise_cov, N_TRAIN)
    x_test, _ = draw_pairs(rng, response, noise_cov, N_TEST)

    cfg = CompressorConfig(loss="vmim", vmim_hidden=32, vmim_layers=2)
    with torch.random.fork_rng(devices=[]):  # weights seeded here, global state untouched
        torch.manual_seed(0)
        compressor = nn.Linear(N_DATA, 2)
        head = build_vmim_head(cfg, n_params=2)
    steps, batch_size = 2000, 1024
    opt = torch.optim.Adam([*compressor.parameters(), *head.parameters()], lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    x = torch.tensor(x_train, dtype=torch.float32)
    theta = torch.tensor(theta_train, dtype=torch.float32)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        rows = torch.randint(N_TRAIN, (batch_size,), generator=generator)
        loss = vmim_nll(head, compressor(x[rows]), theta[rows])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        mean, learned = head.mean_cov(compressor(torch.tensor(x_test, dtype=torch.float32)))
    return ToyFit(
        cov=cov,
        mean=x_test @ (cov @ response.T @ precision).T,
        learned_cov=learned.double().mean(0).numpy(),
        learned_mean=mean.double().numpy(),
    )


@pytest.fixture(scope="module")
def toy() -> ToyFit:
    """2000 Adam steps of 1024 pairs (about 12 s on 2 cores)."""
    return fit_toy()


def correlation(cov: npt.NDArray[np.float64]) -> float:
    return float(cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]))


def test_toy_has_unequal_correlated_information(toy: ToyFit) -> None:
    std = np.sqrt(np.diag(toy.cov))
    assert std[1] > 2 * std[0]
    assert correlation(toy.cov) < -0.5


def test_vmim_learns_the_analytic_posterior_covariance(toy: ToyFit) -> None:
    np.testing.assert_allclose(np.diag(toy.learned_cov), np.diag(toy.cov), rtol=0.1)
    assert correlation(toy.learned_cov) == pytest.approx(correlation(toy.cov), abs=0.1)


def test_vmim_learns_the_analytic_posterior_mean(toy: ToyFit) -> None:
    # the mean's error is a small fraction of the posterior's spread, for each parameter
    msd = np.mean((toy.learned_mean - toy.mean) ** 2, axis=0)
    assert np.all(msd < 0.02 * np.diag(toy.cov)), (msd, np.diag(toy.cov))


# --- the Lightning module -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, table: TileTable, split: Split
) -> CompressorResult:
    """2 epochs of 5 steps with the vmim loss (~3 s on 2 cores)."""
    out = tmp_path_factory.mktemp("vmim")
    cfg = tiny_config(loss="vmim", max_epochs=2)
    return fit_compressor(table, split, cfg, out / "run", tmp_root=out / ".tmp", accelerator="cpu")


def new_module(stats: NormStats, **overrides: object) -> CompressorModule:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return CompressorModule(tiny_config(loss="vmim", **overrides), stats)


def test_loss_choices_and_unknown_loss() -> None:
    assert COMPRESSOR_LOSSES == ("mse", "vmim")
    assert CompressorConfig().loss == "mse"
    with pytest.raises(ValueError, match=r"loss must be one of \('mse', 'vmim'\), got 'nll'"):
        CompressorConfig(loss="nll")
    with pytest.raises(ValueError, match=r"vmim_layers must be >= 1, got 0"):
        CompressorConfig(loss="vmim", vmim_layers=0)
    assert TrainingSettings.from_preset("cpu_demo").compressor.loss == "mse"
    settings = TrainingSettings.from_preset("cpu_demo", loss="vmim", symmetries="square")
    assert (settings.compressor.loss, settings.compressor.symmetries) == ("vmim", "square")
    assert settings.compressor.backbone == "test_efficientnet"
    with pytest.raises(ValueError, match=r"loss must be one of \('mse', 'vmim'\), got 'l1'"):
        TrainingSettings.from_preset("cpu_demo", loss="l1")


def test_module_has_a_density_head_only_for_vmim(stats: NormStats) -> None:
    module = new_module(stats, vmim_hidden=16, vmim_layers=3)
    head = module.density_head
    assert isinstance(head, GaussianNPE)
    assert (head.n_summaries, head.n_params) == (2, 2)
    assert len([m for m in head.body if isinstance(m, nn.Linear)]) == 3
    assert head.body[0].out_features == 16
    # the summaries enter the head as they are
    assert torch.equal(head.summary_shift, torch.zeros(2))
    assert torch.equal(head.summary_scale, torch.ones(2))
    mse = CompressorModule(tiny_config(), stats)
    assert mse.density_head is None
    assert not any(key.startswith("density_head.") for key in mse.state_dict())


def test_training_step_trains_summaries_and_head(table: TileTable, stats: NormStats) -> None:
    module = new_module(stats)
    batch = (torch.tensor(table.tiles[:8]), torch.tensor(table.theta[:8]))
    loss = module._step(batch, train=True)
    assert loss.ndim == 0
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    loss.backward()
    assert module.density_head is not None
    for part in (module.net.head, module.net.backbone, module.density_head):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads)
        assert any(bool(g.abs().sum() > 0) for g in grads if g is not None)
    # validation: the NLL of the exact targets given the plain tiles' summaries
    module.eval()
    with torch.no_grad():
        val = module._step(batch, train=False)
        theta_norm = (batch[1].float() - module.theta_mean) / module.theta_std
        expected = -module.density_head.log_prob(theta_norm, module.compress(batch[0])).mean()
    torch.testing.assert_close(val, expected)


def test_nll_is_float32_under_bf16_autocast(stats: NormStats) -> None:
    module = new_module(stats)
    head = module.density_head
    assert head is not None
    gen = torch.Generator().manual_seed(0)
    t = torch.randn(64, 2, generator=gen).bfloat16().float()  # exact in bf16 too
    theta = torch.randn(64, 2, generator=gen)
    reference = vmim_nll(head, t, theta)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = vmim_nll(head, t.bfloat16(), theta)
    assert under_autocast.dtype == torch.float32
    assert torch.equal(under_autocast, reference)


def test_fit_records_the_loss(trained: CompressorResult) -> None:
    record = json.loads(trained.files.result.read_text())
    assert record["loss"] == "vmim"
    assert record["config"]["loss"] == "vmim"
    assert np.isfinite(record["best_val_loss"])  # an NLL, of either sign
    assert record["global_step"] == 10
    metadata = trained.to_metadata()
    assert metadata["loss"] == "vmim"
    assert metadata["best_val_loss"] == record["best_val_loss"]


def test_checkpoint_round_trip(
    trained: CompressorResult, table: TileTable, split: Split, tmp_path: Path
) -> None:
    module = load_compressor(trained.best_ckpt)
    assert module.cfg.loss == "vmim"
    assert isinstance(module.density_head, GaussianNPE)
    tiles = table.tiles[split.compressor_val]
    summaries = module.compress(tiles)
    assert summaries.shape == (len(tiles), 2)
    theta = module.predict_theta(tiles)
    assert theta.shape == (len(tiles), 2)
    assert theta.dtype == np.float64
    # physical units: the head's mean, de-standardised
    with torch.no_grad():
        mean, _ = module.density_head(summaries)
    stats = module.norm_stats
    np.testing.assert_allclose(theta, mean.double().numpy() * stats.theta_std + stats.theta_mean)
    assert np.all(np.abs(theta - stats.theta_mean) < 10 * stats.theta_std)
    # the validation loss that chose best.ckpt is the NLL of the plain validation tiles
    batch = (torch.from_numpy(np.array(tiles)), torch.from_numpy(table.theta[split.compressor_val]))
    with torch.no_grad():
        nll = float(module._step(batch, train=False))
    assert nll == pytest.approx(trained.metrics["best_val_loss"], rel=1e-4, abs=1e-5)
    # val_mse is the MSE of the head's point estimates
    scores = evaluate_split(module, table, split.compressor_val)
    assert scores["mse"] == pytest.approx(trained.metrics["val_mse"], rel=1e-5)
    # saved again and loaded again: the same outputs
    copy = tmp_path / "copy.ckpt"
    torch.save(torch.load(trained.best_ckpt, weights_only=True), copy)
    again = load_compressor(copy)
    assert torch.equal(again.compress(tiles), summaries)
    np.testing.assert_array_equal(again.predict_theta(tiles), theta)
    state = torch.load(copy, weights_only=True)["state_dict"]
    assert any(key.startswith("density_head.") for key in state)


def test_config_and_checkpoints_from_before_the_loss_field(
    table: TileTable, split: Split, tmp_path: Path
) -> None:
    """A config without ``loss``/``vmim_*`` is an MSE one; its checkpoint loads and resumes."""
    cfg = tiny_config(max_epochs=1)
    old_config = {
        k: v for k, v in cfg.to_dict().items() if k not in ("loss", "vmim_hidden", "vmim_layers")
    }
    assert CompressorConfig.from_dict(old_config) == cfg
    out, tmp = tmp_path / "run", tmp_path / ".tmp"
    fit_compressor(table, split, cfg, out, tmp_root=tmp, accelerator="cpu", max_steps=1)
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = torch.load(out / name, weights_only=True)
        ckpt["hyper_parameters"]["config"] = old_config
        torch.save(ckpt, out / name)
    old = load_compressor(out / "best.ckpt")
    assert old.cfg == cfg
    assert old.density_head is None
    resumed = fit_compressor(table, split, cfg, out, tmp_root=tmp, accelerator="cpu", max_steps=2)
    assert resumed.metrics["resumed_from_step"] == 1
    assert resumed.metrics["loss"] == "mse"
