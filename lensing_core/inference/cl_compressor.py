"""Compression of band powers to (Omega_m, S8): features and a small MLP trained on MSE.

Features of one tile's band powers ``(10, n_bands)``: the log of the 4 auto spectra and the 6
cross-correlation coefficients ``r_ij = C_ij / sqrt(C_ii C_jj)`` of every band, so that the
features are of order one and the amplitude information (the log) is linear in log sigma_8.
An MLP (not a linear score compression: the band powers of the prior box are far from a
single fiducial's linear response, and the field compressor is non-linear too) maps the
standardised features to the standardised (Omega_m, S8), trained with AdamW on MSE and
early-stopped on the compressor-validation set of the field's split, so that both summaries
are chosen the same way. Its outputs are the summaries the power-spectrum NPE conditions on.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from lensing_core._types import FloatArray
from lensing_core.io import atomic_open
from lensing_core.sky.power import PAIRS

_STANDARDISATION = ("feature_mean", "feature_std", "theta_mean", "theta_std")
_AUTO = [PAIRS.index((i, i)) for i in range(4)]
_CROSS = [(p, PAIRS.index((i, i)), PAIRS.index((j, j))) for p, (i, j) in enumerate(PAIRS) if i != j]


def cl_features(band_powers: npt.ArrayLike) -> FloatArray:
    """
    Features of band powers: log auto spectra and cross-correlation coefficients.

    Parameters
    ----------
    band_powers
        ``(..., 10, n_bands)`` in :data:`~lensing_core.sky.power.PAIRS` order.

    Returns
    -------
        ``(..., 10 * n_bands)`` float64: ``log C_ii`` (4 bins) then ``r_ij`` (6 pairs).

    Raises
    ------
    ValueError
        An auto band power that is not positive (log undefined).
    """
    bp = np.asarray(band_powers, dtype=np.float64)
    auto = bp[..., _AUTO, :]
    if not np.all(auto > 0):
        raise ValueError("band powers with auto spectra <= 0: no log features")
    cross = np.stack(
        [bp[..., p, :] / np.sqrt(bp[..., a, :] * bp[..., b, :]) for p, a, b in _CROSS], -2
    )
    return np.concatenate([np.log(auto), cross], axis=-2).reshape(*bp.shape[:-2], -1)


@dataclass(frozen=True)
class ClCompressor:
    """
    A trained band-power compressor with its feature and parameter standardisation.

    Attributes
    ----------
    model
        The MLP, in eval mode.
    feature_mean, feature_std
        Standardisation of the features (compressor-train rows).
    theta_mean, theta_std
        Standardisation of (Omega_m, S8) (compressor-train rows).
    history
        Per epoch: train and validation MSE.
    best_epoch
        The epoch whose weights were kept (lowest validation MSE).
    """

    model: nn.Sequential
    feature_mean: FloatArray
    feature_std: FloatArray
    theta_mean: FloatArray
    theta_std: FloatArray
    history: list[dict[str, float]]
    best_epoch: int

    def compress(self, features: npt.ArrayLike) -> torch.Tensor:
        """Standardised (Omega_m, S8) estimates of ``(n, n_features)`` features: ``(n, 2)``."""
        x = (np.asarray(features, dtype=np.float64) - self.feature_mean) / self.feature_std
        with torch.no_grad():
            return self.model(torch.from_numpy(x.astype(np.float32)))

    def predict_theta(self, features: npt.ArrayLike) -> FloatArray:
        """(Omega_m, S8) estimates in physical units, ``(n, 2)``."""
        out = self.compress(features).double().numpy()
        return out * self.theta_std + self.theta_mean

    def to_record(self) -> dict[str, Any]:
        """JSON-ready summary of the training."""
        return {
            "best_epoch": self.best_epoch,
            "epochs": len(self.history),
            "best_val_mse": min(h["val_mse"] for h in self.history),
        }


CHECKPOINT_FORMAT = "lensing_core.cl_compressor/1"


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, hidden),
        nn.GELU(),
        nn.Linear(hidden, hidden),
        nn.GELU(),
        nn.Linear(hidden, n_out),
    )


def save_cl_compressor(path: Path, compressor: ClCompressor, *, tmp_root: Path) -> Path:
    """Write the weights, standardisation and history of *compressor* to *path*, atomically."""
    first = compressor.model[0]
    payload = {
        "format": CHECKPOINT_FORMAT,
        "dims": {"n_in": first.in_features, "hidden": first.out_features},
        "state_dict": {k: v.detach().cpu() for k, v in compressor.model.state_dict().items()},
        **{name: torch.from_numpy(getattr(compressor, name)) for name in _STANDARDISATION},
        "history": compressor.history,
        "best_epoch": compressor.best_epoch,
    }
    with atomic_open(Path(path), "wb", tmp_root=tmp_root) as handle:
        torch.save(payload, handle)
    return Path(path)


def load_cl_compressor(path: Path) -> ClCompressor:
    """
    Read a compressor written by :func:`save_cl_compressor`.

    Raises
    ------
    FileNotFoundError
        *path* does not exist.
    ValueError
        Not such a checkpoint, or truncated (the message names the file).
    """
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises many types for a corrupt file
        raise ValueError(f"band-power compressor {path} is unreadable: {err}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a band-power compressor ({CHECKPOINT_FORMAT})")
    dims = payload["dims"]
    model = _mlp(dims["n_in"], dims["hidden"], len(payload["theta_mean"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    standardisation = {name: payload[name].double().numpy() for name in _STANDARDISATION}
    return ClCompressor(
        model, history=payload["history"], best_epoch=payload["best_epoch"], **standardisation
    )


def fit_cl_compressor(
    features: npt.ArrayLike,
    theta: npt.ArrayLike,
    train_rows: npt.ArrayLike,
    val_rows: npt.ArrayLike,
    *,
    hidden: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 64,
    max_epochs: int = 200,
    patience: int = 20,
    seed: int = 42,
) -> ClCompressor:
    """
    Train the MLP on the rows *train_rows*, keeping the weights of the lowest MSE on *val_rows*.

    Parameters
    ----------
    features
        ``(n_rows, n_features)`` (:func:`cl_features`).
    theta
        ``(n_rows, 2)`` (Omega_m, S8).
    train_rows, val_rows
        Rows of the compressor-train and compressor-validation sets (with every noise
        realisation of the training tiles, if wanted; validation on realisation 0).
    hidden, lr, weight_decay, batch_size, max_epochs, patience
        MLP width (2 hidden layers, GELU), AdamW settings, and early stopping.
    seed
        Seeds the weights and the order.

    Raises
    ------
    ValueError
        Empty sets, or non-finite features.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(theta, dtype=np.float64)
    train = np.array(train_rows, dtype=np.int64)  # copies: torch wants writable arrays
    val = np.array(val_rows, dtype=np.int64)
    if len(train) == 0 or len(val) == 0:
        raise ValueError("the band-power compressor needs training and validation rows")
    if not np.all(np.isfinite(x[np.concatenate([train, val])])):
        raise ValueError("non-finite band-power features")
    x_mean, x_std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-12
    y_mean, y_std = y[train].mean(axis=0), y[train].std(axis=0) + 1e-12
    xs = torch.from_numpy(((x - x_mean) / x_std).astype(np.float32))
    ys = torch.from_numpy(((y - y_mean) / y_std).astype(np.float32))
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # seeded weights, the global stream untouched
        torch.manual_seed(seed)
        model = _mlp(x.shape[1], hidden, y.shape[1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    train_t, val_t = torch.from_numpy(train), torch.from_numpy(val)
    best, best_epoch, stale, history = math.inf, 0, 0, []
    best_state = copy.deepcopy(model.state_dict())
    for epoch in range(1, max_epochs + 1):
        model.train()
        order = train_t[torch.randperm(len(train_t), generator=generator)]
        losses = []
        for first in range(0, len(order), batch_size):
            rows = order[first : first + batch_size]
            loss = nn.functional.mse_loss(model(xs[rows]), ys[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        model.eval()
        with torch.no_grad():
            val_mse = float(nn.functional.mse_loss(model(xs[val_t]), ys[val_t]))
        history.append({"epoch": epoch, "train_mse": float(np.mean(losses)), "val_mse": val_mse})
        if val_mse < best:
            best, best_epoch, stale = val_mse, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return ClCompressor(model, x_mean, x_std, y_mean, y_std, history, best_epoch)
