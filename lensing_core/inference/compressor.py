"""The compressor: a timm backbone + head, tiles -> summaries of (Omega_m, S8).

The network maps standardised tiles ``(batch, n_bins, n_pix, n_pix)`` to ``n_summaries``
numbers ``t``, the summaries the NPE conditions on. Two objectives
(:data:`lensing_core.inference.config.COMPRESSOR_LOSSES`):

``"mse"``
    ``t`` is trained by MSE to equal the standardised parameters, so it is also a point
    estimate of theta (the posterior mean).
``"vmim"``
    Variational mutual information maximisation: ``t`` and a Gaussian density head
    ``q(theta_norm | t)`` (:func:`build_vmim_head`, a
    :class:`~lensing_core.inference.npe.GaussianNPE`) are trained jointly on the mean
    negative log-likelihood :func:`vmim_nll`; the point estimate is the head's mean.

The config and the normalisation statistics are hyper-parameters of the checkpoint: a
checkpoint alone is enough to compress raw tiles (:func:`load_compressor`,
:meth:`CompressorModule.compress`).
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import lightning as L  # noqa: N812 (Lightning's own convention)
import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (torch's convention)

from lensing_core.dataset.normalization import NormStats
from lensing_core.inference.config import SYMMETRY_GROUPS, CompressorConfig
from lensing_core.inference.npe import GaussianNPE
from lensing_core.io import InputMissingError

logger = logging.getLogger(__name__)

#: Checkpoint hyper-parameter keys that :func:`load_compressor` needs.
HPARAM_KEYS: tuple[str, ...] = ("config", "norm_stats", "in_chans")


def build_backbone(cfg: CompressorConfig, in_chans: int = 4) -> nn.Sequential:
    """
    Backbone and regression head, randomly initialised (never downloads weights).

    Parameters
    ----------
    cfg
        Uses ``backbone``, ``head_hidden`` and ``n_summaries``.
    in_chans
        Input channels: tomographic bins.

    Returns
    -------
        ``Sequential(backbone=..., head=...)``: ``(batch, in_chans, n_pix, n_pix) ->
        (batch, num_features) -> (batch, n_summaries)``; the backbone is
        ``timm.create_model(..., num_classes=0)``, the head ``Linear -> GELU -> Linear``.
    """
    import timm  # imports torchvision: slow, so only when a network is built

    try:
        backbone = timm.create_model(
            cfg.backbone, pretrained=False, in_chans=in_chans, num_classes=0
        )
    except RuntimeError as err:  # timm's "Unknown model (...)"
        raise ValueError(f"cannot build timm backbone {cfg.backbone!r}: {err}") from None
    head = nn.Sequential(
        nn.Linear(cast("int", backbone.num_features), cfg.head_hidden),  # timm's width
        nn.GELU(),
        nn.Linear(cfg.head_hidden, cfg.n_summaries),
    )
    return nn.Sequential(OrderedDict(backbone=backbone, head=head))


def build_vmim_head(cfg: CompressorConfig, n_params: int) -> GaussianNPE:
    """
    Density head ``q(theta_norm | t)`` of a ``"vmim"`` compressor, randomly initialised.

    Parameters
    ----------
    cfg
        Uses ``n_summaries`` (the input), ``vmim_hidden`` and ``vmim_layers``.
    n_params
        Number of parameters of the Gaussian.

    Returns
    -------
        A :class:`~lensing_core.inference.npe.GaussianNPE` (full-covariance Gaussian over
        standardised theta) whose summary standardisation stays the identity (shift 0,
        scale 1): it learns jointly with the summaries, which need no rescaling.
    """
    return GaussianNPE(
        cfg.n_summaries, n_params, hidden=cfg.vmim_hidden, n_hidden_layers=cfg.vmim_layers
    )


def vmim_nll(head: GaussianNPE, summaries: torch.Tensor, theta_norm: torch.Tensor) -> torch.Tensor:
    r"""
    The VMIM loss: mean negative log-likelihood :math:`-\log q(\theta | t)` over the rows.

    Parameters
    ----------
    head
        The density head (:func:`build_vmim_head`).
    summaries
        ``(batch, n_summaries)`` summaries ``t``; gradients flow into whatever made them.
    theta_norm
        ``(batch, n_params)`` standardised parameters.

    Returns
    -------
        0-d float32 tensor, nats per row (with respect to standardised theta).

    Notes
    -----
    Minimising it over the compressor and the head maximises a variational lower bound on
    the mutual information between the summaries and theta (Barber & Agakov 2003; for
    lensing, Jeffrey, Alsing & Lanusse 2021, MNRAS 501, 954). It is computed in float32
    with autocast off: the triangular solve and log-determinant of
    :meth:`GaussianNPE.log_prob <lensing_core.inference.npe.GaussianNPE.log_prob>` need it,
    and under bf16 autocast the head's linear layers would otherwise run in bf16.
    """
    with torch.autocast(device_type=summaries.device.type, enabled=False):
        return head.nll(theta_norm.float(), summaries.float()).mean()


#: The 8 symmetries of a square pixel grid as operations on the last two axes ``(..., x, y)``
#: of a tile (``x``, ``y``: NESTED coordinates on the HEALPix face, see
#: :func:`lensing_core.sky.healpix.face_ring_indices`; ``(0, 0)`` is the face's south corner,
#: ``(n-1, n-1)`` its north corner, ``(n-1, 0)`` its east corner). ``rot90``, ``rot180``,
#: ``rot270``: ``torch.rot90`` with ``k`` = 1, 2, 3 on ``dims=(-2, -1)``. ``flip_lr``:
#: ``y -> n-1-y``; ``flip_ud``: ``x -> n-1-x``. ``transpose``: ``(x, y) -> (y, x)``, the
#: reflection about the south-north diagonal; ``antitranspose``: ``(x, y) -> (n-1-y, n-1-x)``,
#: the reflection about the east-west diagonal. The groups are :data:`SYMMETRY_GROUPS`.
SYMMETRY_ELEMENTS: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda t: t,
    "rot90": lambda t: torch.rot90(t, 1, dims=(-2, -1)),
    "rot180": lambda t: torch.rot90(t, 2, dims=(-2, -1)),
    "rot270": lambda t: torch.rot90(t, 3, dims=(-2, -1)),
    "flip_lr": lambda t: t.flip(-1),
    "flip_ud": lambda t: t.flip(-2),
    "transpose": lambda t: t.transpose(-2, -1),
    "antitranspose": lambda t: t.flip(-2, -1).transpose(-2, -1),
}


def draw_symmetries(
    n: int, symmetries: str = "face", *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """
    Random elements of a symmetry group for *n* tiles, as :func:`augment_tiles` draws them.

    Parameters
    ----------
    n
        Number of tiles.
    symmetries
        A key of :data:`SYMMETRY_GROUPS`.
    generator
        CPU generator (the global one if not given).

    Returns
    -------
        ``(n,)`` int64 CPU tensor: index ``k`` is ``SYMMETRY_GROUPS[symmetries][k]``. The same
        generator state gives the same draws as :func:`augment_tiles` (which calls this), so
        a cache of the transformed tiles' summaries reproduces its random stream exactly.

    Raises
    ------
    ValueError
        An unknown *symmetries*.
    """
    if symmetries not in SYMMETRY_GROUPS:
        msg = f"unknown symmetries {symmetries!r}; choose one of {tuple(SYMMETRY_GROUPS)}"
        raise ValueError(msg)
    if symmetries == "square":
        # the draws of the original implementation: rot90(k) after a flip_lr with p = 1/2
        turns = torch.randint(0, 4, (n,), generator=generator)
        flip = torch.rand(n, generator=generator) < 0.5
        return turns + 4 * flip.long()
    return torch.randint(0, len(SYMMETRY_GROUPS[symmetries]), (n,), generator=generator)


def augment_tiles(
    tiles: torch.Tensor,
    *,
    symmetries: str = "face",
    rolls: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """
    Each tile independently transformed by a random symmetry of a HEALPix face (or square).

    Parameters
    ----------
    tiles
        Shape ``(batch, n_bins, n_pix, n_pix)`` in the NESTED face layout, any device; all
        bins of a tile get the same transformation.
    symmetries
        A key of :data:`SYMMETRY_GROUPS`. ``"face"``: uniform over the 4 exact symmetries of
        an equatorial HEALPix face (identity, ``transpose``, ``antitranspose``, ``rot180``).
        ``"square"``: uniform over the 8 symmetries of the square, drawn exactly as before
        the face group existed (the same generator gives the same output), the earlier
        published pipeline's choice; its turns by 90 degrees and single-axis flips swap the
        face's unequal diagonals and stretch it by about 8.5%.
    rolls
        Also roll each tile circularly by random offsets along both pixel axes.
    generator
        CPU generator for the random choices (the global CPU generator if not given); the
        choices are drawn on the CPU and moved to the tiles' device.

    Returns
    -------
        A new tensor of the same shape: one element of the group
        (:data:`SYMMETRY_ELEMENTS`) per tile, then the rolls.

    Raises
    ------
    ValueError
        Tiles that are not square ``(batch, n_bins, n, n)``, or an unknown *symmetries*.
    """
    if tiles.ndim != 4 or tiles.shape[-1] != tiles.shape[-2]:
        raise ValueError(f"expected square tiles (batch, n_bins, n, n), got {tuple(tiles.shape)}")
    n_batch, n_pix, device = tiles.shape[0], tiles.shape[-1], tiles.device
    choice = draw_symmetries(n_batch, symmetries, generator=generator)
    group = SYMMETRY_GROUPS[symmetries]
    out = torch.empty_like(tiles)
    for index, name in enumerate(group):
        sel = torch.nonzero(choice == index).squeeze(1).to(device)
        if len(sel):
            out[sel] = SYMMETRY_ELEMENTS[name](tiles[sel])
    if rolls:
        # torch.roll takes one shift for the whole tensor: gather with per-tile shifted indices
        shift = torch.randint(0, n_pix, (n_batch, 2), generator=generator).to(device)
        pix = torch.arange(n_pix, device=device)
        rows = (pix[None, :] - shift[:, :1]) % n_pix  # (batch, n_pix)
        cols = (pix[None, :] - shift[:, 1:]) % n_pix
        out = out.gather(-2, rows[:, None, :, None].expand_as(out))
        out = out.gather(-1, cols[:, None, None, :].expand_as(out))
    return out


def lr_factor(step: int, *, warmup_steps: int, decay_every_steps: int, gamma: float) -> float:
    """
    Multiplier of the peak learning rate at optimiser step *step* (0-based).

    ``(step + 1) / warmup_steps`` during the warmup, then
    ``gamma ** ((step - warmup_steps) // decay_every_steps)``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return gamma ** ((step - warmup_steps) // max(1, decay_every_steps))


class CompressorModule(L.LightningModule):
    """
    Lightning module of the compressor.

    Parameters
    ----------
    config
        The run's :class:`CompressorConfig` (or its dict, as stored in a checkpoint).
    norm_stats
        Statistics of the compressor-train split (or their dict); ``n_bins`` must equal
        *in_chans* and ``n_params`` must equal ``config.n_summaries``.
    in_chans
        Tile channels (tomographic bins).
    steps_per_epoch
        Optimiser steps per epoch, to turn the schedule's epochs into steps.

    Attributes
    ----------
    net
        Backbone and head (:func:`build_backbone`): standardised tiles -> summaries.
    density_head
        ``config.loss == "vmim"``: the density head ``q(theta_norm | t)``
        (:func:`build_vmim_head`), trained with *net*, its weights in the checkpoint.
        ``None`` for ``"mse"``.

    Notes
    -----
    Training loss, by ``config.loss``: ``"mse"``, the MSE between the network output and
    the standardised parameters plus Gaussian noise of std ``config.target_noise_std``;
    ``"vmim"``, the mean negative log-likelihood :func:`vmim_nll` of the same noisy
    standardised parameters under the density head given the network output. Both on tiles
    standardised and augmented by :func:`augment_tiles` with the group
    ``config.symmetries`` (by default the 4 exact symmetries of a HEALPix face;
    ``"square"``, the 8 of the square, reproduces the earlier published pipeline).
    Validation loss (``val_loss``): the same without noise or augmentation, so an MSE or an
    NLL (nats per tile). Weight decay applies to weights of rank >= 2 only (the density
    head's included), not to biases and normalisation parameters.
    """

    # buffers, registered in __init__
    tile_mean: torch.Tensor
    tile_std: torch.Tensor
    theta_mean: torch.Tensor
    theta_std: torch.Tensor

    def __init__(
        self,
        config: CompressorConfig | Mapping[str, Any],
        norm_stats: NormStats | Mapping[str, Any],
        *,
        in_chans: int = 4,
        steps_per_epoch: int = 1,
    ) -> None:
        super().__init__()
        cfg = config if isinstance(config, CompressorConfig) else CompressorConfig.from_dict(config)
        stats = norm_stats if isinstance(norm_stats, NormStats) else NormStats.from_dict(norm_stats)
        if stats.n_bins != in_chans:
            msg = (
                f"norm stats are for {stats.n_bins} bins but the compressor takes {in_chans} "
                "input channels"
            )
            raise ValueError(msg)
        if stats.n_params != cfg.n_summaries:
            msg = (
                f"norm stats have {stats.n_params} parameters {stats.param_names} but the "
                f"compressor regresses n_summaries={cfg.n_summaries} outputs onto them"
            )
            raise ValueError(msg)
        self.cfg, self.norm_stats = cfg, stats
        self.in_chans, self.steps_per_epoch = in_chans, max(1, int(steps_per_epoch))
        self.save_hyperparameters(
            {
                "config": cfg.to_dict(),
                "norm_stats": stats.to_dict(),
                "in_chans": in_chans,
                "steps_per_epoch": self.steps_per_epoch,
            }
        )
        self.net = build_backbone(cfg, in_chans)
        # built after net, and only for vmim: an mse module draws the same weights as before
        self.density_head: GaussianNPE | None = (
            build_vmim_head(cfg, stats.n_params) if cfg.loss == "vmim" else None
        )
        # not persistent: the hyper-parameters are their one stored copy
        for name in ("tile_mean", "tile_std", "theta_mean", "theta_std"):
            values = torch.tensor(getattr(stats, name).tolist(), dtype=torch.float32)
            self.register_buffer(name, values, persistent=False)

    def forward(self, tiles_norm: torch.Tensor) -> torch.Tensor:
        """Standardised tiles ``(batch, n_bins, n, n)`` -> outputs ``(batch, n_summaries)``."""
        return self.net(tiles_norm)

    def normalize(self, tiles: torch.Tensor) -> torch.Tensor:
        """Standardise raw tiles with the stored per-bin statistics."""
        return (tiles - self.tile_mean[:, None, None]) / self.tile_std[:, None, None]

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], *, train: bool) -> torch.Tensor:
        tiles, theta = batch
        x = self.normalize(tiles.float())
        y = (theta.float() - self.theta_mean) / self.theta_std  # (batch, n_params)
        if train:
            x = augment_tiles(x, symmetries=self.cfg.symmetries, rolls=self.cfg.augment_rolls)
            y = y + self.cfg.target_noise_std * torch.randn_like(y)
        t = self(x).float()  # (batch, n_summaries)
        if self.density_head is None:
            return F.mse_loss(t, y)
        return vmim_nll(self.density_head, t, y)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> Any:
        """The loss (MSE or VMIM NLL) on augmented tiles and noisy standardised targets."""
        loss = self._step(batch, train=True)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[0]))
        optimizer = self.optimizers()
        assert not isinstance(optimizer, list)  # configure_optimizers returns one
        self.log("lr", optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> Any:
        """The loss (MSE or VMIM NLL) on plain tiles and exact standardised targets."""
        loss = self._step(batch, train=False)
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[0]))
        return loss

    def configure_optimizers(self) -> Any:
        """AdamW and a per-step ``LambdaLR`` of :func:`lr_factor`."""
        decay = [p for p in self.parameters() if p.ndim >= 2]
        no_decay = [p for p in self.parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.cfg.lr,
        )
        warmup = self.cfg.warmup_epochs * self.steps_per_epoch
        schedule = functools.partial(
            lr_factor,
            warmup_steps=max(1, round(warmup)) if warmup > 0 else 0,
            decay_every_steps=self.cfg.lr_decay_every_epochs * self.steps_per_epoch,
            gamma=self.cfg.lr_decay_gamma,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    @torch.no_grad()
    def compress(
        self, tiles: torch.Tensor | npt.NDArray[np.floating], *, batch_size: int = 256
    ) -> torch.Tensor:
        """
        Summaries of raw (unstandardised) tiles, in eval mode.

        Parameters
        ----------
        tiles
            Shape ``(n, n_bins, n_pix, n_pix)``, numpy or torch on any device.
        batch_size
            Tiles per forward pass.

        Returns
        -------
            float32 tensor ``(n, n_summaries)`` on the module's device: the network's output
            ``t``. For ``loss="mse"`` these are standardised estimates of
            ``norm_stats.param_names``; for ``"vmim"`` summaries without units that the
            density head conditions on (:meth:`predict_theta` gives the estimates).
            Computed under ``no_grad`` (not ``inference_mode``), so they can feed a network
            that is being trained.
        """
        if tiles.ndim != 4 or tiles.shape[1] != self.in_chans:
            msg = f"expected tiles (n, {self.in_chans}, n_pix, n_pix), got {tuple(tiles.shape)}"
            raise ValueError(msg)
        was_training = self.training
        self.eval()
        try:
            out = []
            for first in range(0, tiles.shape[0], batch_size):
                chunk = tiles[first : first + batch_size]
                if not isinstance(chunk, torch.Tensor):
                    # a copy: table tiles are read-only views that torch will not wrap
                    chunk = torch.from_numpy(np.array(chunk, dtype=np.float32))
                x = self.normalize(chunk.to(self.device, torch.float32))
                out.append(self(x).float())  # (chunk, n_bins, n, n) -> (chunk, n_summaries)
            if not out:
                return torch.empty(0, self.cfg.n_summaries, device=self.device)
            return torch.cat(out)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def estimate_norm(self, summaries: torch.Tensor) -> torch.Tensor:
        """
        Standardised point estimates of theta from summaries.

        Parameters
        ----------
        summaries
            ``(n, n_summaries)`` from :meth:`compress`, on the module's device.

        Returns
        -------
            float32 ``(n, n_params)``: the summaries themselves for ``loss="mse"``, the
            density head's mean of ``q(theta_norm | t)`` for ``"vmim"``.
        """
        if self.density_head is None:
            return summaries.float()
        with torch.autocast(device_type=summaries.device.type, enabled=False):
            mean, _ = self.density_head(summaries.float())
        return mean

    def predict_theta(
        self, tiles: torch.Tensor | npt.NDArray[np.floating], *, batch_size: int = 256
    ) -> npt.NDArray[np.float64]:
        """
        Point estimates of the parameters in physical units, ``(n, n_params)`` numpy.

        The standardised estimates of :meth:`estimate_norm` (the summaries for
        ``loss="mse"``, the density head's posterior mean for ``"vmim"``), de-standardised
        with the stored statistics.
        """
        summaries = self.compress(tiles, batch_size=batch_size)
        estimates = self.estimate_norm(summaries).cpu().numpy().astype(np.float64)
        return estimates * self.norm_stats.theta_std + self.norm_stats.theta_mean


def read_checkpoint(
    path: Path, *, map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """
    The dict of a Lightning checkpoint, loaded with ``weights_only=True``.

    Parameters
    ----------
    path
        The checkpoint file.
    map_location
        Device of the tensors.
    mmap
        Memory-map the tensors instead of reading them (to look at the hyper-parameters of
        a large checkpoint cheaply).

    Raises
    ------
    InputMissingError
        *path* does not exist (a ``FileNotFoundError``).
    ValueError
        The file is truncated, corrupt or not a compressor checkpoint (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise InputMissingError(f"compressor checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        msg = f"compressor checkpoint {path} is truncated or corrupt ({type(err).__name__}: {err})"
        raise ValueError(msg) from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, Mapping) or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a compressor checkpoint (no state_dict/hyper_parameters)")
    missing = [key for key in HPARAM_KEYS if key not in hparams]
    if missing:
        raise ValueError(f"{path} is not a compressor checkpoint: hyper-parameters lack {missing}")
    return ckpt


def load_compressor(
    ckpt_path: Path, *, map_location: str | torch.device = "cpu"
) -> CompressorModule:
    """
    A trained compressor from its checkpoint alone, in eval mode.

    Parameters
    ----------
    ckpt_path
        ``best.ckpt`` (or ``last.ckpt``) written by
        :func:`lensing_core.inference.training.fit_compressor`.
    map_location
        Device for the weights.

    Raises
    ------
    InputMissingError
        The file does not exist (a ``FileNotFoundError``).
    ValueError
        The file is corrupt, or its config, statistics or weights do not fit together or
        with this code (the message names the file).
    """
    ckpt = read_checkpoint(ckpt_path, map_location=map_location)
    hp = ckpt["hyper_parameters"]
    try:
        module = CompressorModule(
            hp["config"],
            hp["norm_stats"],
            in_chans=int(hp["in_chans"]),
            steps_per_epoch=int(hp.get("steps_per_epoch", 1)),
        )
        module.load_state_dict(ckpt["state_dict"])
    except (ValueError, TypeError, RuntimeError) as err:
        raise ValueError(f"compressor checkpoint {ckpt_path} is incompatible: {err}") from None
    return module.to(map_location).eval()
