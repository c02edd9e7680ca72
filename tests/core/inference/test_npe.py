"""Gaussian NPE: shapes, the exact posterior of a linear-Gaussian toy, training and checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lensing_core.inference.npe import (
    GaussianNPE,
    NPEConfig,
    fit_npe,
    load_npe,
    save_npe,
)
from lensing_core.io import InputMissingError

# Linear-Gaussian toy: theta ~ N(0, PRIOR_COV), x = A theta + n, n ~ N(0, NOISE_COV). The
# posterior is Gaussian with covariance (PRIOR_COV^-1 + A^T N^-1 A)^-1 for every x, and mean
# POST_COV A^T N^-1 x.
PRIOR_COV = torch.tensor([[1.0, 0.5], [0.5, 0.8]])
A = torch.tensor([[1.5, 0.3], [-0.4, 1.0]])
NOISE_COV = torch.tensor([[0.3, 0.05], [0.05, 0.2]])
POST_COV = torch.linalg.inv(torch.linalg.inv(PRIOR_COV) + A.T @ torch.linalg.inv(NOISE_COV) @ A)
POST_GAIN = POST_COV @ A.T @ torch.linalg.inv(NOISE_COV)  # posterior mean = POST_GAIN @ x


def _draw_toy(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(x (n, 2), theta (n, 2)) from the toy simulator."""
    theta = torch.randn(n, 2, generator=generator) @ torch.linalg.cholesky(PRIOR_COV).T
    noise = torch.randn(n, 2, generator=generator) @ torch.linalg.cholesky(NOISE_COV).T
    return theta @ A.T + noise, theta


def _toy_batch(indices: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Fresh simulations for every batch, as the pipeline's on-the-fly compression gives."""
    return _draw_toy(len(indices), generator)


@pytest.fixture(scope="module")
def toy_result():
    torch.set_num_threads(2)
    val = _draw_toy(4000, torch.Generator().manual_seed(1))
    cfg = NPEConfig(batch_size=256, max_epochs=150, patience=15)
    return fit_npe(_toy_batch, val, cfg, n_train=4096)


def test_toy_posterior_covariance_within_10_percent(toy_result) -> None:
    """The mean predicted covariance matches the exact one element-wise within 10%."""
    x, _ = _draw_toy(4000, torch.Generator().manual_seed(2))
    with torch.no_grad():
        mean, cov = toy_result.model.mean_cov(x)
    rel_err = ((cov.mean(0) - POST_COV) / POST_COV).abs()
    assert rel_err.max() < 0.10, f"covariance error {rel_err.tolist()}\n{cov.mean(0)}\n{POST_COV}"
    # The mean tracks the exact posterior mean to a small fraction of the posterior width.
    exact_mean = x @ POST_GAIN.T
    err_sigma = (mean - exact_mean) / POST_COV.diagonal().sqrt()
    assert err_sigma.square().mean().sqrt() < 0.1
    assert toy_result.best_val_nll < toy_result.history[0]["val_nll"]


def test_toy_training_history_keeps_the_best_epoch(toy_result) -> None:
    """The kept weights are those of the epoch with the lowest validation NLL."""
    history = toy_result.history
    assert [h["epoch"] for h in history] == list(range(1, len(history) + 1))
    best = min(history, key=lambda h: h["val_nll"])
    assert toy_result.best_epoch == best["epoch"]
    assert toy_result.best_val_nll == pytest.approx(best["val_nll"], abs=1e-4)
    val_s, val_t = _draw_toy(4000, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert float(toy_result.model.nll(val_t, val_s).mean()) == pytest.approx(
            toy_result.best_val_nll, rel=1e-5
        )
    assert toy_result.stopped_early == (len(history) < 150)
    assert not toy_result.model.training
    record = toy_result.to_record()
    assert record["epochs"] == len(history)
    assert record["n_steps"] == toy_result.n_steps == len(history) * 16


def test_log_prob_is_the_gaussian_density() -> None:
    """log_prob equals torch's MultivariateNormal with the predicted mean and Cholesky factor."""
    torch.manual_seed(0)
    model = GaussianNPE(3, 2)
    summary, theta = torch.randn(7, 3), torch.randn(7, 2)
    mean, scale_tril = model(summary)
    expected = torch.distributions.MultivariateNormal(mean, scale_tril=scale_tril).log_prob(theta)
    torch.testing.assert_close(model.log_prob(theta, summary), expected)
    torch.testing.assert_close(model.nll(theta, summary), -expected)
    assert torch.equal(scale_tril, scale_tril.tril())
    assert bool((scale_tril.diagonal(dim1=-2, dim2=-1) >= model.min_scale).all())


def test_shapes_of_batched_outputs() -> None:
    """Leading batch axes carry through; the covariance is symmetric positive definite."""
    model = GaussianNPE()
    summary, theta = torch.randn(4, 5, 2), torch.randn(4, 5, 2)
    mean, cov = model.mean_cov(summary)
    assert mean.shape == (4, 5, 2)
    assert cov.shape == (4, 5, 2, 2)
    torch.testing.assert_close(cov, cov.transpose(-1, -2))
    assert bool((torch.linalg.eigvalsh(cov) > 0).all())
    assert model.log_prob(theta, summary).shape == (4, 5)
    assert model.sample(summary, 3, generator=torch.Generator().manual_seed(0)).shape == (
        3,
        4,
        5,
        2,
    )


def test_sample_moments_match_mean_cov() -> None:
    torch.manual_seed(0)
    model = GaussianNPE()
    summary = torch.randn(1, 2)
    with torch.no_grad():
        draws = model.sample(summary, 20_000, generator=torch.Generator().manual_seed(3))[:, 0]
        mean, cov = model.mean_cov(summary)
    torch.testing.assert_close(draws.mean(0), mean[0], atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(draws.T), cov[0], atol=0.05, rtol=0.05)


@pytest.mark.parametrize(
    ("theta_shape", "summary_shape", "match"),
    [
        ((5, 2), (5, 3), r"expected summary of shape \(\.\.\., 2\), got \(5, 3\)"),
        ((5, 1), (5, 2), r"expected theta of shape \(\.\.\., 2\), got \(5, 1\)"),
        ((4, 2), (5, 2), r"one batch shape, got \(4, 2\) and \(5, 2\)"),
    ],
)
def test_shape_errors_show_expected_and_actual(theta_shape, summary_shape, match) -> None:
    model = GaussianNPE()
    with pytest.raises(ValueError, match=match):
        model.log_prob(torch.zeros(theta_shape), torch.zeros(summary_shape))


def test_mean_cov_rejects_a_wrong_summary() -> None:
    with pytest.raises(ValueError, match=r"expected summary of shape \(\.\.\., 2\), got \(2, 4\)"):
        GaussianNPE().mean_cov(torch.zeros(2, 4))


def test_make_batch_of_the_wrong_shape_is_an_error() -> None:
    def bad_batch(indices, generator):
        return torch.zeros(len(indices), 2), torch.zeros(len(indices) + 1, 2)

    val = _draw_toy(10, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"make_batch: expected summaries \(8, 2\)"):
        fit_npe(bad_batch, val, NPEConfig(batch_size=8, max_epochs=1), n_train=8)


def test_nonfinite_summaries_stop_training() -> None:
    def nan_batch(indices, generator):
        return torch.full((len(indices), 2), math.nan), torch.zeros(len(indices), 2)

    val = _draw_toy(10, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="non-finite loss"):
        fit_npe(nan_batch, val, NPEConfig(batch_size=8, max_epochs=1), n_train=8)


def test_training_is_deterministic_and_leaves_global_rng_alone() -> None:
    """One seed gives the same weights; the global torch RNG is not consumed."""
    val = _draw_toy(200, torch.Generator().manual_seed(0))
    cfg = NPEConfig(batch_size=64, max_epochs=3)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = fit_npe(_toy_batch, val, cfg, n_train=256)
    assert torch.equal(torch.get_rng_state(), before)
    second = fit_npe(_toy_batch, val, cfg, n_train=256, generator=torch.Generator().manual_seed(42))
    other = fit_npe(_toy_batch, val, cfg, n_train=256, generator=torch.Generator().manual_seed(7))
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key
    assert not torch.equal(first.model.head.weight, other.model.head.weight)
    assert first.history == second.history


def test_patience_stops_early() -> None:
    """With a learning rate too small to matter, progress stalls and patience ends the run."""
    val = _draw_toy(200, torch.Generator().manual_seed(0))
    cfg = NPEConfig(batch_size=64, max_epochs=50, patience=2, lr=1e-9, min_delta=1e-3)
    result = fit_npe(_toy_batch, val, cfg, n_train=128)
    assert result.stopped_early
    assert len(result.history) == 3
    assert result.best_epoch == 1


def test_config_rejects_unknown_and_bad_settings() -> None:
    cfg = NPEConfig.from_dict({"hidden": 32, "patience": 5})
    assert cfg.hidden == 32
    assert cfg.patience == 5
    assert cfg.n_hidden_layers == 2
    assert cfg.seed == 42
    assert NPEConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown NPEConfig keys \['hiden'\]"):
        NPEConfig.from_dict({"hiden": 32})
    with pytest.raises(ValueError, match="must be positive"):
        NPEConfig(batch_size=0)
    with pytest.raises(ValueError, match="lr_decay_factor"):
        NPEConfig(lr_decay_factor=1.5)


def test_save_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = NPEConfig(hidden=16)
    model = GaussianNPE.from_config(cfg, 3, 2)
    model.set_summary_normalization(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 1.0, 0.5]))
    extra = {"theta_mean": [0.3, 0.8], "theta_std": [0.05, 0.04], "compressor": "best.ckpt"}
    path = tmp_path / "models" / "npe" / "npe_best.ckpt"
    assert save_npe(path, model, cfg, extra, tmp_root=tmp_path / ".tmp") == path
    assert list(tmp_path.rglob("*.partial")) == []
    loaded = load_npe(path)
    assert loaded.config == cfg
    assert loaded.extra == extra
    assert not loaded.model.training
    summary = torch.randn(6, 3)
    with torch.no_grad():
        for got, want in zip(loaded.model.mean_cov(summary), model.mean_cov(summary), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_corrupt_missing_and_foreign_checkpoints_name_the_file(tmp_path: Path) -> None:
    model, cfg = GaussianNPE(), NPEConfig()
    path = save_npe(tmp_path / "npe_best.ckpt", model, cfg, tmp_root=tmp_path / ".tmp")
    path.write_bytes(path.read_bytes()[:200])  # truncated
    with pytest.raises(ValueError, match=rf"{path}.*truncated or corrupt"):
        load_npe(path)
    with pytest.raises(InputMissingError, match=str(tmp_path / "absent.ckpt")):
        load_npe(tmp_path / "absent.ckpt")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": model.state_dict()}, foreign)
    with pytest.raises(ValueError, match=rf"{foreign} is not an NPE checkpoint"):
        load_npe(foreign)
    mismatched = tmp_path / "mismatched.ckpt"
    save_npe(mismatched, model, cfg, tmp_root=tmp_path / ".tmp")
    payload = torch.load(mismatched, weights_only=True)
    payload["config"]["hidden"] = 32  # weights of 64 units under a 32-unit config
    torch.save(payload, mismatched)
    with pytest.raises(ValueError, match=rf"{mismatched} is incompatible"):
        load_npe(mismatched)


def test_save_rejects_extra_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "npe_best.ckpt"
    with pytest.raises(ValueError, match="JSON-ready"):
        save_npe(path, GaussianNPE(), NPEConfig(), {"x": math.nan}, tmp_root=tmp_path / ".tmp")
    assert not path.exists()
