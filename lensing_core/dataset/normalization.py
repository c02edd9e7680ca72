"""Standardisation statistics of tiles and parameters, from the compressor-train split only.

Tiles are standardised per tomographic bin, ``(kappa - tile_mean[b]) / tile_std[b]``, the
parameters per column, ``(theta - theta_mean) / theta_std``. The statistics are computed from
the rows given (the compressor-train split), so nothing about the validation, test or fiducial
tiles leaks into the compressor. The same numbers are stored in ``norm_stats.json`` and in the
compressor checkpoint.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from lensing_core.io import InputMissingError, write_json
from lensing_core.sims.catalog import PARAM_NAMES

if TYPE_CHECKING:
    import torch

_FORMAT = 1
_ARRAYS = ("tile_mean", "tile_std", "theta_mean", "theta_std")

ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor")


def _frozen(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    out = np.array(values, dtype=np.float64).reshape(-1)
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class NormStats:
    """
    Standardisation statistics.

    Attributes
    ----------
    tile_mean, tile_std
        Mean and standard deviation of the pixels of each bin, shape ``(n_bins,)``.
    theta_mean, theta_std
        Mean and standard deviation of each parameter, shape ``(n_params,)``, columns in the
        order of ``param_names``, physical units.
    param_names
        Parameter names.
    n_tiles
        Number of tiles the statistics were computed from.
    """

    tile_mean: npt.NDArray[np.float64]
    tile_std: npt.NDArray[np.float64]
    theta_mean: npt.NDArray[np.float64]
    theta_std: npt.NDArray[np.float64]
    param_names: tuple[str, ...] = PARAM_NAMES
    n_tiles: int = 0

    def __post_init__(self) -> None:
        for name in _ARRAYS:
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "param_names", tuple(self.param_names))
        if self.tile_mean.shape != self.tile_std.shape:
            msg = f"tile_mean {self.tile_mean.shape} and tile_std {self.tile_std.shape} differ"
            raise ValueError(msg)
        if not (self.theta_mean.shape == self.theta_std.shape == (len(self.param_names),)):
            msg = (
                f"theta_mean {self.theta_mean.shape} and theta_std {self.theta_std.shape} must "
                f"both be ({len(self.param_names)},) for parameters {self.param_names}"
            )
            raise ValueError(msg)
        for name in _ARRAYS:
            values = getattr(self, name)
            if not np.all(np.isfinite(values)):
                raise ValueError(f"{name} has non-finite values: {values.tolist()}")
        for name in ("tile_std", "theta_std"):
            if np.any(getattr(self, name) <= 0):
                raise ValueError(f"{name} must be > 0, got {getattr(self, name).tolist()}")

    @property
    def n_bins(self) -> int:
        """Number of tomographic bins (tile channels)."""
        return len(self.tile_mean)

    @property
    def n_params(self) -> int:
        """Number of parameters."""
        return len(self.param_names)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NormStats):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (floats kept exactly)."""
        return {
            "format": _FORMAT,
            **{name: getattr(self, name).tolist() for name in _ARRAYS},
            "param_names": list(self.param_names),
            "n_tiles": int(self.n_tiles),
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> NormStats:
        """Inverse of :meth:`to_dict`, validating shapes and values."""
        if record.get("format", _FORMAT) != _FORMAT:
            raise ValueError(f"norm stats format {record.get('format')!r}, expected {_FORMAT}")
        missing = [name for name in (*_ARRAYS, "param_names") if name not in record]
        if missing:
            raise ValueError(f"norm stats lack {missing}")
        return cls(
            **{name: record[name] for name in _ARRAYS},
            param_names=tuple(record["param_names"]),
            n_tiles=int(record.get("n_tiles", 0)),
        )


def compute_norm_stats(
    tiles: npt.NDArray[np.floating],
    theta: npt.NDArray[np.floating],
    indices: npt.ArrayLike,
    *,
    param_names: Sequence[str] = PARAM_NAMES,
    chunk_size: int = 64,
) -> NormStats:
    """
    Statistics of the rows *indices* of a tile table.

    Parameters
    ----------
    tiles
        Tiles, shape ``(n_rows, n_bins, n_pix, n_pix)`` (may be a memory map).
    theta
        Parameters, shape ``(n_rows, n_params)``.
    indices
        Rows to use: the compressor-train split.
    param_names
        Names of the columns of *theta*.
    chunk_size
        Tiles gathered at a time; memory is one chunk of float32 tiles plus temporaries of
        the same size.

    Returns
    -------
        Population (``ddof=0``) means and standard deviations.

    Notes
    -----
    Chunk means and sums of squared deviations are accumulated in float64 and merged with
    Chan et al.'s pairwise update (Chan, Golub & LeVeque 1983), so that large pixel counts do
    not lose precision the way a single ``sum(x**2) - n * mean**2`` would.
    """
    rows = np.sort(np.asarray(indices, dtype=np.int64).reshape(-1))
    if len(rows) == 0:
        raise ValueError("cannot compute normalisation statistics from zero tiles")
    if tiles.ndim != 4 or theta.shape != (tiles.shape[0], len(param_names)):
        msg = (
            f"expected tiles (n_rows, n_bins, n_pix, n_pix) and theta (n_rows, "
            f"{len(param_names)}), got {tiles.shape} and {theta.shape}"
        )
        raise ValueError(msg)
    n_bins = tiles.shape[1]
    count, mean, m2 = 0, np.zeros(n_bins), np.zeros(n_bins)
    for first in range(0, len(rows), chunk_size):
        chunk = np.asarray(tiles[rows[first : first + chunk_size]])  # (c, n_bins, n, n)
        n_chunk = chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
        chunk_mean = chunk.mean(axis=(0, 2, 3), dtype=np.float64)
        dev = chunk - chunk_mean.astype(chunk.dtype)[:, None, None]
        chunk_m2 = np.square(dev).sum(axis=(0, 2, 3), dtype=np.float64)
        delta = chunk_mean - mean
        total = count + n_chunk
        mean = mean + delta * (n_chunk / total)
        m2 = m2 + chunk_m2 + delta**2 * (count * n_chunk / total)
        count = total
    theta_rows = np.asarray(theta[rows], dtype=np.float64)
    return NormStats(
        tile_mean=mean,
        tile_std=np.sqrt(m2 / count),
        theta_mean=theta_rows.mean(axis=0),
        theta_std=theta_rows.std(axis=0),
        param_names=tuple(param_names),
        n_tiles=len(rows),
    )


def save_norm_stats(stats: NormStats, path: Path, *, tmp_root: Path | None = None) -> Path:
    """Write *stats* to *path* as JSON, atomically (temporary in *tmp_root*, else the parent)."""
    path = Path(path)
    return write_json(path, stats.to_dict(), tmp_root=tmp_root or path.parent, indent=1)


def load_norm_stats(path: Path) -> NormStats:
    """
    Read statistics written by :func:`save_norm_stats`.

    Raises
    ------
    InputMissingError
        *path* does not exist (a ``FileNotFoundError``).
    ValueError
        The file is not valid normalisation statistics (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise InputMissingError(f"normalisation statistics {path} do not exist")
    try:
        return NormStats.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise ValueError(f"{path} holds no valid normalisation statistics: {err}") from None


def _like(values: np.ndarray, ref: ArrayT) -> ArrayT:
    """*values* as an array of *ref*'s kind, dtype and device."""
    if isinstance(ref, np.ndarray):
        return values.astype(ref.dtype if ref.dtype.kind == "f" else np.float64)
    import torch

    dtype = ref.dtype if ref.is_floating_point() else torch.float32
    return torch.tensor(values.tolist(), dtype=dtype, device=ref.device)  # values are read-only


def normalize_tiles(tiles: ArrayT, stats: NormStats) -> ArrayT:
    """
    Standardised tiles, ``(tiles - tile_mean[bin]) / tile_std[bin]``.

    Parameters
    ----------
    tiles
        numpy array or torch tensor, shape ``(..., n_bins, n_pix, n_pix)``.
    stats
        The statistics; ``stats.n_bins`` must equal the bin axis.
    """
    if tiles.ndim < 3 or tiles.shape[-3] != stats.n_bins:
        msg = f"expected tiles (..., {stats.n_bins}, n_pix, n_pix), got {tuple(tiles.shape)}"
        raise ValueError(msg)
    mean = _like(stats.tile_mean, tiles)[:, None, None]
    std = _like(stats.tile_std, tiles)[:, None, None]
    return (tiles - mean) / std


def _check_theta(theta: Any, stats: NormStats) -> None:
    if theta.shape[-1:] != (stats.n_params,):
        msg = (
            f"expected theta (..., {stats.n_params}) {stats.param_names}, got {tuple(theta.shape)}"
        )
        raise ValueError(msg)


def normalize_theta(theta: ArrayT, stats: NormStats) -> ArrayT:
    """Standardised parameters, ``(theta - theta_mean) / theta_std``, shape ``(..., n_params)``."""
    _check_theta(theta, stats)
    return (theta - _like(stats.theta_mean, theta)) / _like(stats.theta_std, theta)


def denormalize_theta(theta_norm: ArrayT, stats: NormStats) -> ArrayT:
    """Physical parameters from standardised ones, ``theta_norm * theta_std + theta_mean``."""
    _check_theta(theta_norm, stats)
    return theta_norm * _like(stats.theta_std, theta_norm) + _like(stats.theta_mean, theta_norm)


def theta_std_product(stats: NormStats) -> float:
    """``prod(theta_std)``: divides a FoM of standardised parameters into physical units."""
    return math.prod(stats.theta_std.tolist())
