"""Gaussian neural posterior estimation (NPE) of (Omega_m, S8) from a compressed summary.

The posterior over the *normalised* parameters ``theta_norm = (theta - theta_mean) / theta_std``
given a summary ``s`` is modelled as a Gaussian ``N(mu(s), L(s) L(s)^T)``: a small MLP maps
``s`` to the mean and to the lower-triangular Cholesky factor ``L`` (positive diagonal).

Shape conventions
-----------------
``summary``
    ``(*batch, n_summaries)``; the last axis is the compressor's output (2 by default).
``theta``
    ``(*batch, n_params)`` normalised parameters in :data:`lensing_core.sims.catalog.PARAM_NAMES`
    order; ``batch`` must equal the summary's.
``mean``, ``scale_tril``, ``cov``
    ``(*batch, n_params)``, ``(*batch, n_params, n_params)``, ``(*batch, n_params, n_params)``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import pickle
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lensing_core.inference.config import NPEConfig
from lensing_core.io import InputMissingError, atomic_open, file_sha256

logger = logging.getLogger(__name__)

#: ``format`` entry of a checkpoint written by :func:`save_npe`.
CHECKPOINT_FORMAT = "lensing_core.npe/1"

#: ``make_batch(indices, generator) -> (summaries (B, n_summaries), theta_norm (B, n_params))``.
MakeBatch = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def _check_last_dim(x: torch.Tensor, size: int, name: str) -> None:
    if x.ndim < 1 or x.shape[-1] != size:
        msg = f"expected {name} of shape (..., {size}), got {tuple(x.shape)}"
        raise ValueError(msg)


class GaussianNPE(nn.Module):
    """
    Gaussian posterior ``p(theta_norm | summary) = N(mean, L L^T)`` from an MLP.

    Parameters
    ----------
    n_summaries
        Length of the summary vector (input).
    n_params
        Number of parameters (output dimension of the Gaussian).
    hidden, n_hidden_layers, min_scale
        As in :class:`NPEConfig`.

    Notes
    -----
    The head outputs ``n_params`` means, ``n_params`` raw diagonal entries mapped through
    ``softplus(.) + min_scale``, and the ``n_params (n_params - 1) / 2`` strictly-lower entries of
    ``L`` unconstrained. The input is standardised by the buffers ``summary_shift`` and
    ``summary_scale`` (set by :func:`fit_npe` from training summaries, saved with the weights).
    """

    # buffers, registered in __init__
    summary_shift: torch.Tensor
    summary_scale: torch.Tensor
    _off_rows: torch.Tensor
    _off_cols: torch.Tensor

    def __init__(
        self,
        n_summaries: int = 2,
        n_params: int = 2,
        *,
        hidden: int = 64,
        n_hidden_layers: int = 2,
        min_scale: float = 1e-3,
    ) -> None:
        super().__init__()
        self.n_summaries = n_summaries
        self.n_params = n_params
        self.min_scale = min_scale
        layers: list[nn.Module] = []
        width = n_summaries
        for _ in range(n_hidden_layers):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.body = nn.Sequential(*layers)
        n_off = n_params * (n_params - 1) // 2
        self.head = nn.Linear(width, 2 * n_params + n_off)
        with torch.no_grad():  # start near N(0, I): softplus(0.5413) = 1
            self.head.bias[n_params : 2 * n_params].fill_(math.log(math.e - 1.0))
        self.register_buffer("summary_shift", torch.zeros(n_summaries))
        self.register_buffer("summary_scale", torch.ones(n_summaries))
        rows, cols = torch.tril_indices(n_params, n_params, offset=-1)
        self.register_buffer("_off_rows", rows, persistent=False)
        self.register_buffer("_off_cols", cols, persistent=False)

    @classmethod
    def from_config(cls, cfg: NPEConfig, n_summaries: int = 2, n_params: int = 2) -> GaussianNPE:
        """The estimator with the architecture of *cfg*."""
        return cls(
            n_summaries,
            n_params,
            hidden=cfg.hidden,
            n_hidden_layers=cfg.n_hidden_layers,
            min_scale=cfg.min_scale,
        )

    def set_summary_normalization(self, shift: torch.Tensor, scale: torch.Tensor) -> None:
        """Standardise inputs as ``(summary - shift) / scale``; both ``(n_summaries,)``."""
        _check_last_dim(shift, self.n_summaries, "summary shift")
        _check_last_dim(scale, self.n_summaries, "summary scale")
        if not bool(torch.all(scale > 0)):
            msg = f"summary scale must be positive, got {scale.tolist()}"
            raise ValueError(msg)
        self.summary_shift.copy_(shift.reshape(-1))
        self.summary_scale.copy_(scale.reshape(-1))

    def forward(self, summary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Posterior mean and Cholesky factor.

        Parameters
        ----------
        summary
            ``(*batch, n_summaries)``.

        Returns
        -------
            ``mean`` ``(*batch, n_params)`` and lower-triangular ``scale_tril``
            ``(*batch, n_params, n_params)`` with positive diagonal, normalised-theta units.
        """
        _check_last_dim(summary, self.n_summaries, "summary")
        d = self.n_params
        h = self.body((summary - self.summary_shift) / self.summary_scale)
        out = self.head(h)  # (*batch, 2 d + d (d - 1) / 2)
        mean = out[..., :d]
        diag = nn.functional.softplus(out[..., d : 2 * d]) + self.min_scale
        scale_tril = torch.diag_embed(diag)  # (*batch, d, d)
        scale_tril[..., self._off_rows, self._off_cols] = out[..., 2 * d :]
        return mean, scale_tril

    def _check_pair(self, theta: torch.Tensor, summary: torch.Tensor) -> None:
        _check_last_dim(theta, self.n_params, "theta")
        _check_last_dim(summary, self.n_summaries, "summary")
        if theta.shape[:-1] != summary.shape[:-1]:
            msg = (
                f"expected theta (*batch, {self.n_params}) and summary (*batch, "
                f"{self.n_summaries}) with one batch shape, got {tuple(theta.shape)} and "
                f"{tuple(summary.shape)}"
            )
            raise ValueError(msg)

    def log_prob(self, theta: torch.Tensor, summary: torch.Tensor) -> torch.Tensor:
        """
        Log posterior density of normalised *theta* given *summary*.

        Parameters
        ----------
        theta
            ``(*batch, n_params)``, normalised.
        summary
            ``(*batch, n_summaries)``.

        Returns
        -------
            ``(*batch,)`` log densities (nats, with respect to normalised theta).
        """
        self._check_pair(theta, summary)
        mean, scale_tril = self(summary)
        diff = (theta - mean).unsqueeze(-1)  # (*batch, d, 1)
        z = torch.linalg.solve_triangular(scale_tril, diff, upper=False).squeeze(-1)
        log_det = torch.log(torch.diagonal(scale_tril, dim1=-2, dim2=-1)).sum(-1)
        return -0.5 * z.square().sum(-1) - log_det - 0.5 * self.n_params * math.log(2 * math.pi)

    def nll(self, theta: torch.Tensor, summary: torch.Tensor) -> torch.Tensor:
        r"""
        Gaussian negative log-likelihood per row, ``-log_prob``.

        Returns
        -------
            ``(*batch,)``: :math:`\tfrac12\|L^{-1}(\theta-\mu)\|^2 + \sum_i \log L_{ii}
            + \tfrac{d}{2}\log 2\pi`.
        """
        return -self.log_prob(theta, summary)

    def mean_cov(self, summary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Posterior mean ``(*batch, n_params)`` and covariance ``(*batch, n_params, n_params)``.

        Both in normalised-theta units; see :func:`lensing_core.inference.fom.to_physical`.
        """
        mean, scale_tril = self(summary)
        return mean, scale_tril @ scale_tril.transpose(-1, -2)

    def sample(
        self, summary: torch.Tensor, n_samples: int, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw ``(n_samples, *batch, n_params)`` normalised parameters from the posterior."""
        mean, scale_tril = self(summary)
        eps = torch.randn(
            (n_samples, *mean.shape), generator=generator, dtype=mean.dtype, device="cpu"
        ).to(mean.device)
        return mean + (scale_tril @ eps.unsqueeze(-1)).squeeze(-1)


@dataclass(frozen=True)
class NPEResult:
    """
    Outcome of :func:`fit_npe`.

    Attributes
    ----------
    model
        The estimator with the weights of the best validation epoch, in eval mode.
    history
        One record per epoch: ``epoch`` (1-based), ``train_nll``, ``val_nll`` (mean nats per
        row) and the learning rate ``lr`` used.
    best_epoch, best_val_nll
        Where the kept weights come from and their validation NLL.
    n_steps
        Optimisation steps taken.
    stopped_early
        Whether training stopped on *patience* before ``max_epochs``.
    elapsed_s
        Wall time of the training, seconds.
    """

    model: GaussianNPE
    history: list[dict[str, float]] = field(repr=False)
    best_epoch: int
    best_val_nll: float
    n_steps: int
    stopped_early: bool
    elapsed_s: float

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready summary (no weights)."""
        return {
            "best_epoch": self.best_epoch,
            "best_val_nll": self.best_val_nll,
            "epochs": len(self.history),
            "n_steps": self.n_steps,
            "stopped_early": self.stopped_early,
            "elapsed_s": self.elapsed_s,
            "history": self.history,
        }


def _checked_batch(
    batch: tuple[torch.Tensor, torch.Tensor], n_rows: int, model: GaussianNPE, what: str
) -> tuple[torch.Tensor, torch.Tensor]:
    summaries, theta = batch
    expected_s, expected_t = (n_rows, model.n_summaries), (n_rows, model.n_params)
    if tuple(summaries.shape) != expected_s or tuple(theta.shape) != expected_t:
        msg = (
            f"{what}: expected summaries {expected_s} and theta {expected_t}, got "
            f"{tuple(summaries.shape)} and {tuple(theta.shape)}"
        )
        raise ValueError(msg)
    return summaries, theta


@torch.no_grad()
def _mean_nll(
    model: GaussianNPE, summaries: torch.Tensor, theta: torch.Tensor, batch_size: int
) -> float:
    model.eval()
    total = 0.0
    for start in range(0, len(theta), batch_size):
        rows = slice(start, start + batch_size)
        total += float(model.nll(theta[rows], summaries[rows]).sum())
    return total / len(theta)


def fit_npe(
    make_batch: MakeBatch,
    val_data: tuple[torch.Tensor, torch.Tensor],
    cfg: NPEConfig,
    *,
    n_train: int,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
) -> NPEResult:
    """
    Train a :class:`GaussianNPE` on summaries made on the fly, with early stopping.

    Parameters
    ----------
    make_batch
        ``make_batch(indices, generator) -> (summaries, theta_norm)``: *indices* is a 1-d int64
        CPU tensor of rows of the training set (``0 <= i < n_train``), and the result holds
        ``(len(indices), n_summaries)`` summaries and ``(len(indices), n_params)`` normalised
        parameters (any device; they are moved to *device*). In the pipeline it augments the
        tiles and runs the frozen compressor without gradients, so every epoch sees new
        summaries; it should draw its randomness from *generator*.
    val_data
        ``(summaries (n_val, n_summaries), theta_norm (n_val, n_params))``, fixed tensors for
        early stopping (the test split in the pipeline).
    cfg
        Architecture and training settings.
    n_train
        Number of training rows; an epoch visits each once, in a fresh random order.
    generator
        Source of all randomness (weight initialisation, order, what *make_batch* draws);
        ``torch.Generator().manual_seed(cfg.seed)`` if not given.
    device
        Where the MLP trains (``"cpu"`` or ``"cuda"``).

    Returns
    -------
        The model with the best validation NLL (on *device*, eval mode) and the history.

    Raises
    ------
    ValueError
        If a batch or *val_data* has the wrong shape, or the loss stops being finite.

    Notes
    -----
    A plain loop rather than Lightning: the data come from a callable, not a dataset, and the
    MLP has under 5,000 weights, so a step takes a few milliseconds on a CPU, of which a
    Trainer's per-step hooks would be a large share; the whole loop (AdamW, learning rate
    reduced on validation plateaus, early stopping on an in-memory best state) is short. The
    input standardisation is estimated from one training batch before the first step.
    """
    if n_train < 1:
        msg = f"fit_npe: n_train must be positive, got {n_train}"
        raise ValueError(msg)
    if generator is None:
        generator = torch.Generator().manual_seed(cfg.seed)
    val_s, val_t = val_data
    n_val = len(val_t)
    if n_val < 1:
        msg = "fit_npe: the validation set is empty"
        raise ValueError(msg)
    init_seed = int(torch.randint(2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):  # weights from *generator*, global state untouched
        torch.manual_seed(init_seed)
        probe = make_batch(
            torch.randperm(n_train, generator=generator)[: cfg.batch_size], generator
        )
        n_summaries, n_params = probe[0].shape[-1], probe[1].shape[-1]
        model = GaussianNPE.from_config(cfg, n_summaries, n_params)
    probe_s, _ = _checked_batch(probe, min(n_train, cfg.batch_size), model, "make_batch")
    probe_s = probe_s.detach().to("cpu", torch.float32)
    scale = probe_s.std(0) if len(probe_s) > 1 else torch.ones(n_summaries)
    model.set_summary_normalization(probe_s.mean(0), torch.where(scale > 0, scale, 1.0))
    model.to(device)
    val_s, val_t = _checked_batch(val_data, n_val, model, "val_data")
    val_s, val_t = val_s.to(device, torch.float32), val_t.to(device, torch.float32)

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt,
        factor=cfg.lr_decay_factor,
        patience=cfg.lr_decay_patience,
        threshold=cfg.min_delta,
        threshold_mode="abs",
    )
    history: list[dict[str, float]] = []
    best_val, best_epoch, best_state = math.inf, 0, copy.deepcopy(model.state_dict())
    reference = math.inf  # the last validation NLL that counted as progress (patience)
    n_steps, stale, stopped_early = 0, 0, False
    start_time = time.perf_counter()
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        order = torch.randperm(n_train, generator=generator)
        train_total = 0.0
        for start in range(0, n_train, cfg.batch_size):
            indices = order[start : start + cfg.batch_size]
            summaries, theta = _checked_batch(
                make_batch(indices, generator), len(indices), model, "make_batch"
            )
            summaries = summaries.detach().to(device, torch.float32)
            loss = model.nll(theta.detach().to(device, torch.float32), summaries).mean()
            if not torch.isfinite(loss):
                msg = f"fit_npe: non-finite loss {loss.item()} at epoch {epoch}, step {n_steps}"
                raise ValueError(msg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n_steps += 1
            train_total += float(loss.detach()) * len(indices)
        val_nll = _mean_nll(model, val_s, val_t, max(cfg.batch_size, 4096))
        history.append(
            {
                "epoch": epoch,
                "train_nll": train_total / n_train,
                "val_nll": val_nll,
                "lr": opt.param_groups[0]["lr"],
            }
        )
        logger.debug("NPE epoch %d: train %.4f val %.4f", epoch, history[-1]["train_nll"], val_nll)
        if not math.isfinite(val_nll):
            msg = f"fit_npe: non-finite validation NLL at epoch {epoch}"
            raise ValueError(msg)
        sched.step(val_nll)
        if val_nll < best_val:
            best_val, best_epoch = val_nll, epoch
            best_state = copy.deepcopy(model.state_dict())
        if val_nll < reference - cfg.min_delta:
            reference, stale = val_nll, 0
        else:
            stale += 1
            if stale >= cfg.patience:
                stopped_early = True
                break
    model.load_state_dict(best_state)
    model.eval()
    elapsed_s = time.perf_counter() - start_time
    logger.info(
        "NPE: best validation NLL %.4f at epoch %d of %d (%d steps, %.1f s)",
        best_val,
        best_epoch,
        len(history),
        n_steps,
        elapsed_s,
    )
    return NPEResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        best_val_nll=best_val,
        n_steps=n_steps,
        stopped_early=stopped_early,
        elapsed_s=elapsed_s,
    )


@dataclass(frozen=True)
class LoadedNPE:
    """A checkpoint read by :func:`load_npe`: model (eval mode), config and extra record."""

    model: GaussianNPE
    config: NPEConfig
    extra: dict[str, Any]


def save_npe(
    path: Path,
    model: GaussianNPE,
    cfg: NPEConfig,
    extra: Mapping[str, Any] | None = None,
    *,
    tmp_root: Path,
) -> Path:
    """
    Write the weights, the config and a JSON-ready *extra* record to *path*, atomically.

    Parameters
    ----------
    path
        Destination, e.g. ``models/npe/lmax{L}_{noise}/npe_best.ckpt``.
    model, cfg
        The estimator and the config it was built from.
    extra
        What inference needs beside the weights (theta mean/std, compressor checkpoint, ...);
        stored as JSON text so that loading never unpickles code.
    tmp_root
        Directory for the temporary file (same file system, outside the data layout).

    Returns
    -------
        *path*.
    """
    try:
        extra_json = json.dumps(dict(extra or {}), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        msg = f"save_npe({path}): extra must be JSON-ready: {err}"
        raise ValueError(msg) from None
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": cfg.to_dict(),
        "dims": {"n_summaries": model.n_summaries, "n_params": model.n_params},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra_json": extra_json,
    }
    with atomic_open(Path(path), "wb", tmp_root=tmp_root) as handle:
        torch.save(payload, handle)
    return Path(path)


def load_npe(path: Path, *, map_location: str | torch.device = "cpu") -> LoadedNPE:
    """
    Read a checkpoint written by :func:`save_npe`.

    Raises
    ------
    lensing_core.io.InputMissingError
        If *path* does not exist.
    ValueError
        If the file is truncated or corrupt, is not an NPE checkpoint, or its weights do not
        fit its config (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        msg = f"NPE checkpoint is missing: {path} does not exist"
        raise InputMissingError(msg)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, pickle.UnpicklingError) as err:
        msg = f"NPE checkpoint {path} is truncated or corrupt ({type(err).__name__}: {err})"
        raise ValueError(msg) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        msg = f"{path} is not an NPE checkpoint (format {found!r}, expected {CHECKPOINT_FORMAT!r})"
        raise ValueError(msg)
    try:
        cfg = NPEConfig.from_dict(payload["config"])
        dims = payload["dims"]
        model = GaussianNPE.from_config(cfg, int(dims["n_summaries"]), int(dims["n_params"]))
        model.load_state_dict(payload["state_dict"])
        extra = json.loads(payload["extra_json"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        msg = f"NPE checkpoint {path} is incompatible: {type(err).__name__}: {err}"
        raise ValueError(msg) from None
    model.to(map_location).eval()
    return LoadedNPE(model=model, config=cfg, extra=extra)


# --------------------------------------------------------------------------- seed spread


def npe_seeds(cfg: NPEConfig) -> list[int]:
    """The seeds of the ``cfg.n_seeds`` NPEs of a seed spread: ``cfg.seed, cfg.seed + 1, ...``."""
    return [cfg.seed + k for k in range(cfg.n_seeds)]


def seed_checkpoint_path(path: Path, index: int) -> Path:
    """
    Where the NPE of seed number *index* of a spread is saved.

    *path* itself (e.g. ``npe_best.ckpt``) for the first, ``{stem}_seed{index}{suffix}``
    (``npe_best_seed1.ckpt``, ...) for the others.
    """
    path = Path(path)
    return path if index == 0 else path.with_name(f"{path.stem}_seed{index}{path.suffix}")


def fit_npe_seeds(
    make_batch: MakeBatch,
    val_data: tuple[torch.Tensor, torch.Tensor],
    cfg: NPEConfig,
    *,
    n_train: int,
    device: str | torch.device = "cpu",
) -> list[NPEResult]:
    """
    :func:`fit_npe` once per seed of :func:`npe_seeds`, each from its own generator.

    The same *make_batch* and validation data serve every seed; each fit draws its weights,
    order and augmentation from ``torch.Generator().manual_seed(seed)``.
    """
    return [
        fit_npe(
            make_batch,
            val_data,
            cfg,
            n_train=n_train,
            generator=torch.Generator().manual_seed(seed),
            device=device,
        )
        for seed in npe_seeds(cfg)
    ]


def save_npe_seeds(
    path: Path,
    fits: list[NPEResult],
    cfg: NPEConfig,
    extra: Mapping[str, Any],
    *,
    tmp_root: Path,
) -> list[Path]:
    """
    Save the NPEs of a seed spread: the first at *path*, its record listing them all.

    Each record is *extra* with that NPE's own ``seed`` and training summary
    (:meth:`NPEResult.to_record` but the history, and ``val_nll_history``). The others go to
    :func:`seed_checkpoint_path` first; the first, written last, also holds ``seeds``:
    ``[{"seed", "path", "sha256", "best_val_nll"}]`` of every one, so a reader of *path*
    finds exactly the spread that was trained with it. Checkpoints of a larger earlier
    spread are removed.

    Returns
    -------
        The checkpoint paths, in seed order.
    """
    seeds = npe_seeds(cfg)
    if len(fits) != len(seeds):
        msg = f"save_npe_seeds({path}): {len(fits)} fits for {len(seeds)} seeds"
        raise ValueError(msg)

    def own(index: int) -> dict[str, Any]:
        fit = fits[index]
        summary = {k: v for k, v in fit.to_record().items() if k != "history"}
        history = [h["val_nll"] for h in fit.history]
        return {**extra, **summary, "val_nll_history": history, "seed": seeds[index]}

    entries = []
    for index in range(len(fits) - 1, 0, -1):
        target = seed_checkpoint_path(path, index)
        save_npe(target, fits[index].model, cfg, own(index), tmp_root=tmp_root)
        entries.append(
            {
                "seed": seeds[index],
                "path": target.name,
                "sha256": file_sha256(target),
                "best_val_nll": fits[index].best_val_nll,
            }
        )
    first = {"seed": seeds[0], "path": Path(path).name, "best_val_nll": fits[0].best_val_nll}
    record = {**own(0), "seeds": [first, *reversed(entries)]}
    save_npe(path, fits[0].model, cfg, record, tmp_root=tmp_root)
    index = len(fits)
    while (stale := seed_checkpoint_path(path, index)).exists():
        stale.unlink()
        index += 1
    return [seed_checkpoint_path(path, i) for i in range(len(fits))]


def load_npe_seeds(path: Path, *, map_location: str | torch.device = "cpu") -> list[LoadedNPE]:
    """
    The NPEs of a seed spread saved by :func:`save_npe_seeds`, the one at *path* first.

    A checkpoint without a ``seeds`` record (written before seed spreads) is a spread of one.

    Raises
    ------
    lensing_core.io.InputMissingError
        *path* or a checkpoint it lists is missing.
    ValueError
        A checkpoint is corrupt, or one it lists is not the file that was trained with it
        (its SHA-256 differs): the message names both.
    """
    first = load_npe(path, map_location=map_location)
    out = [first]
    for entry in first.extra.get("seeds", [])[1:]:
        other = Path(path).with_name(str(entry["path"]))
        if other.is_file() and file_sha256(other) != entry.get("sha256"):
            msg = (
                f"NPE checkpoint {other} is not the seed-{entry['seed']} NPE trained with "
                f"{path} (its SHA-256 differs); train the NPE again"
            )
            raise ValueError(msg)
        out.append(load_npe(other, map_location=map_location))
    return out
