"""One configuration's inference, from its shards to its report: what the model assets call.

A *configuration* is one (lmax, noise level), e.g. ``lmax_200_des_y3``; its tiles are the
parquet shards under ``hf_dataset/data/lmax_{L}_{noise}``. Three steps, each a function that
reads what the previous one wrote under the data root::

    train_compressor   shards -> models/compressor/lmax{L}_{noise}/  best.ckpt, last.ckpt,
                                 norm_stats.json, split.json, result.json
    train_npe          shards + compressor -> models/npe/lmax{L}_{noise}/npe_best.ckpt
    fom_report         shards + compressor + NPE -> models/npe/lmax{L}_{noise}/fom_result.json
                                                    and reports/fom/lmax{L}_{noise}.png

Every file is written atomically; every error names the configuration and the file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from lensing_core.dataset.loader import TileTable, load_tiles, realization_rows
from lensing_core.dataset.normalization import NormStats, load_norm_stats, normalize_theta
from lensing_core.dataset.parquet import ShardReport, read_shard_manifest
from lensing_core.dataset.schema import config_name
from lensing_core.dataset.splits import Split, SplitSpec, load_split, make_split
from lensing_core.inference.compressor import (
    SYMMETRY_ELEMENTS,
    SYMMETRY_GROUPS,
    CompressorModule,
    augment_tiles,
    draw_symmetries,
    load_compressor,
)
from lensing_core.inference.config import CompressorConfig, NPEConfig
from lensing_core.inference.npe import (
    fit_npe_seeds,
    load_npe_seeds,
    save_npe_seeds,
)
from lensing_core.inference.report import (
    FomReport,
    check_fiducial,
    finish_fom_report,
    npe_posteriors,
)
from lensing_core.inference.report import config_label as _label
from lensing_core.inference.training import (
    CompressorResult,
    evaluate_r2,
    fit_compressor,
)
from lensing_core.io import InputMissingError, file_sha256
from lensing_core.sims.catalog import FIDUCIAL_SIM_ID
from lensing_core.storage import DataRoot, ShardSet

logger = logging.getLogger(__name__)

COMPRESS_BATCH = 256


def resolve_device(device: str = "auto") -> str:
    """``"cuda"`` for ``"auto"`` when torch sees a GPU, else ``"cpu"``; others unchanged."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def open_config(
    root: DataRoot, lmax: int, noise_level: str, *, cache_dir: Path | None = None
) -> tuple[TileTable, ShardReport]:
    """
    The tiles of one configuration and the report of their shards.

    Parameters
    ----------
    root
        The data root.
    lmax, noise_level
        The configuration.
    cache_dir
        Passed to :func:`~lensing_core.dataset.loader.load_tiles`: convert the shards once to
        a memory-mapped Arrow file there (worth it when the tiles do not fit in memory).

    Returns
    -------
        ``(table, report)``: the table's rows are the shards' rows, ``theta`` float64
        (Omega_m, S8); the report is the shard manifest.

    Raises
    ------
    lensing_core.io.InputMissingError
        No shards for the configuration (names the directory).
    ValueError
        The manifest or a shard is unreadable or does not match (names the file).
    """
    label = _label(lmax, noise_level)
    shard_dir = root.shards(lmax, noise_level).dir
    try:
        report = read_shard_manifest(shard_dir)
    except FileNotFoundError as err:
        msg = f"{label}: no tile shards ({err}); build the shards of this configuration first"
        raise InputMissingError(msg) from None
    except ValueError as err:
        raise ValueError(f"{label}: {err}") from None
    try:
        table = load_tiles(shard_dir, pattern=ShardSet.GLOB, cache_dir=cache_dir)
    except (OSError, ValueError, TypeError) as err:
        raise ValueError(f"{label}: cannot read the shards in {shard_dir}: {err}") from None
    if len(table) != report.rows:
        msg = f"{label}: the shards in {shard_dir} hold {len(table)} rows, manifest {report.rows}"
        raise ValueError(msg)
    return table, report


def config_split(
    columns: Mapping[str, npt.ArrayLike], spec: SplitSpec, label: str, where: Path
) -> Split:
    """
    The split of a configuration's rows, the fiducial sim apart; errors name *label* and *where*.

    Parameters
    ----------
    columns
        ``sim_id`` (and ``noise_realization``, if the rows have several) of every row.
    spec
        How to split.
    label, where
        The configuration and the file or directory the rows come from, for errors.
    """
    try:
        return make_split(
            columns["sim_id"],
            spec,
            realization=columns.get("noise_realization"),
            fiducial_sim_id=FIDUCIAL_SIM_ID,
        )
    except ValueError as err:
        raise ValueError(f"{label} ({where}): {err}") from None


def train_compressor(
    root: DataRoot,
    lmax: int,
    noise_level: str,
    cfg: CompressorConfig,
    *,
    split: SplitSpec | None = None,
    accelerator: str = "auto",
    max_steps: int | None = None,
    cache_dir: Path | None = None,
) -> CompressorResult:
    """
    Train the compressor of one configuration into ``models/compressor/lmax{L}_{noise}``.

    Parameters
    ----------
    root
        The data root.
    lmax, noise_level
        The configuration.
    cfg
        Training settings.
    split
        How the rows are split; by simulation (:class:`SplitSpec` ``()``) if not given.
    accelerator
        Lightning accelerator; ``"auto"`` takes the GPU when there is one.
    max_steps
        Optional cap on optimiser steps (tests, smoke runs).
    cache_dir
        See :func:`open_config`.

    Returns
    -------
        The fit's files and ``result.json`` record.

    Notes
    -----
    The split (by simulation unless *split* says otherwise, the fiducial sim apart) is made
    from the shards' rows and saved as ``split.json`` for the NPE and the report. A training
    that was interrupted (a ``last.ckpt`` without ``result.json``) is resumed from its last
    checkpoint; after a completed one, training starts again from scratch (the shards or
    settings changed, or a new training was asked for).

    Raises
    ------
    lensing_core.io.InputMissingError
        No shards for the configuration.
    ValueError
        Too few tiles for the split, corrupt or incompatible checkpoint to resume from, ...:
        the message names the configuration and the file.
    """
    label = _label(lmax, noise_level)
    table, _ = open_config(root, lmax, noise_level, cache_dir=cache_dir)
    shard_dir = root.shards(lmax, noise_level).dir
    rows = config_split(table.columns, split or SplitSpec(), label, shard_dir)
    files = root.compressor(lmax, noise_level)
    if files.result.exists():
        logger.info("%s: %s holds a finished training; training again", label, files.dir)
        files.last.unlink(missing_ok=True)
    try:
        return fit_compressor(
            table,
            rows,
            cfg,
            files.dir,
            tmp_root=root.tmp_root,
            accelerator=accelerator,
            max_steps=max_steps,
        )
    except ValueError as err:
        raise ValueError(f"{label}: {err}") from None


@dataclass(frozen=True)
class _Trained:
    """The compressor of a configuration with its split and statistics, all checked."""

    table: TileTable
    report: ShardReport
    split: Split
    stats: NormStats
    compressor: CompressorModule
    best_ckpt: Path
    result: Mapping[str, Any]


def _load_trained(
    root: DataRoot, lmax: int, noise_level: str, device: str, cache_dir: Path | None
) -> _Trained:
    """Shards, split, norm stats and compressor of one configuration, checked together."""
    label = _label(lmax, noise_level)
    table, report = open_config(root, lmax, noise_level, cache_dir=cache_dir)
    files = root.compressor(lmax, noise_level)
    comp_dir, result_path = files.dir, files.result
    if not result_path.is_file():
        msg = f"{label}: no trained compressor ({result_path} does not exist); train it first"
        raise InputMissingError(msg)
    try:
        result = json.loads(result_path.read_text())
        split = load_split(files.split)
        stats = load_norm_stats(files.norm_stats)
    except FileNotFoundError as err:
        raise InputMissingError(f"{label}: {err}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{label}: unreadable compressor files in {comp_dir}: {err}") from None
    try:
        split.check_rows(table.sim_id, what=f"shards of {config_name(lmax, noise_level)}")
    except ValueError as err:
        msg = (
            f"{label}: {files.split} does not fit the current shards ({err}); "
            "the shards changed since the compressor was trained: train it again"
        )
        raise ValueError(msg) from None
    best = files.best
    try:
        compressor = load_compressor(best, map_location=device)
    except FileNotFoundError as err:
        raise InputMissingError(f"{label}: {err}") from None
    except ValueError as err:
        raise ValueError(f"{label}: {err}") from None
    if compressor.norm_stats != stats:
        msg = (
            f"{label}: the normalisation statistics in {files.norm_stats} do not "
            f"match those stored in {best}; train the compressor again"
        )
        raise ValueError(msg)
    if table.tile_shape[0] != compressor.in_chans:
        msg = (
            f"{label}: {best} takes {compressor.in_chans} bins, the shards hold tiles of shape "
            f"{table.tile_shape}"
        )
        raise ValueError(msg)
    return _Trained(table, report, split, stats, compressor, best, result)


def _tiles_tensor(table: TileTable, rows: np.ndarray) -> torch.Tensor:
    """Tiles of *rows*, ``(len(rows), n_bins, n, n)`` float32: one gather into a new array."""
    return torch.from_numpy(np.asarray(table.tiles[rows], dtype=np.float32))


def _theta_norm(trained: _Trained, rows: np.ndarray) -> torch.Tensor:
    theta = normalize_theta(trained.table.theta[rows], trained.stats)
    return torch.from_numpy(np.asarray(theta, dtype=np.float32))


@dataclass(frozen=True)
class NPETrainingResult:
    """
    Outcome of :func:`train_npe`.

    Attributes
    ----------
    checkpoint
        ``models/npe/lmax{L}_{noise}/npe_best.ckpt``.
    record
        What the checkpoint's ``extra`` holds: the configuration, the compressor it used
        (path and SHA-256), the parameters' normalisation and the training history summary.
    """

    checkpoint: Path
    record: Mapping[str, Any]

    def to_metadata(self) -> dict[str, Any]:
        """The checkpoint, the compressor it summarises with, and how the training went."""
        r = self.record
        return {
            "path": self.checkpoint,
            "compressor_checkpoint": Path(r["compressor_checkpoint"]),
            **{key: r[key] for key in _NPE_METADATA_KEYS},
        }


_NPE_METADATA_KEYS = (
    "compressor_sha256",
    "best_val_nll",
    "best_epoch",
    "epochs",
    "stopped_early",
    "n_train",
    "n_val",
    "device",
    "elapsed_s",
    "n_seeds",
    "elapsed_s_total",
)


def summary_table(
    compressor: CompressorModule, table: TileTable, groups: npt.ArrayLike, symmetries: str
) -> torch.Tensor:
    """
    The compressor's summaries of every augmentation of some tiles: a finite set, computed once.

    Parameters
    ----------
    compressor
        The frozen compressor.
    table
        The tiles.
    groups
        ``(n, R)`` table rows: the R noise realisations of each of n tiles
        (:func:`~lensing_core.dataset.loader.realization_rows`).
    symmetries
        A key of :data:`~lensing_core.inference.compressor.SYMMETRY_GROUPS`.

    Returns
    -------
        ``(n, R, G, n_summaries)`` float32 on the compressor's device: entry ``[i, r, k]`` is
        the summary of realisation r of tile i transformed by element k of the group, exactly
        what :func:`~lensing_core.inference.compressor.augment_tiles` then
        :meth:`CompressorModule.compress` give when they draw (r, k) without rolls.
    """
    rows = np.asarray(groups, dtype=np.int64)
    n, n_real = rows.shape
    elements = SYMMETRY_GROUPS[symmetries]
    flat = rows.reshape(-1)
    out = []
    for first in range(0, len(flat), COMPRESS_BATCH):
        tiles = _tiles_tensor(table, flat[first : first + COMPRESS_BATCH])
        out.append(
            torch.stack(
                [
                    compressor.compress(SYMMETRY_ELEMENTS[name](tiles), batch_size=COMPRESS_BATCH)
                    for name in elements
                ],
                dim=1,
            )
        )
    if not out:
        raise ValueError("no tiles to summarise")
    return torch.cat(out).reshape(n, n_real, len(elements), -1)


def train_npe(
    root: DataRoot,
    lmax: int,
    noise_level: str,
    cfg: NPEConfig,
    *,
    device: str = "auto",
    cache_dir: Path | None = None,
    summary_cache: bool | None = None,
) -> NPETrainingResult:
    """
    Train the Gaussian NPE of one configuration on the NPE split, compressing on the fly.

    Parameters
    ----------
    root
        The data root.
    lmax, noise_level
        The configuration; its compressor must be trained.
    cfg
        NPE settings (``cfg.seed`` seeds the weights, the order and the augmentation).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``: where the compressor and the MLP run.
    cache_dir
        See :func:`open_config`.
    summary_cache
        Compute the summaries of every (tile, noise realisation, symmetry) of the NPE-train
        set once (:func:`summary_table`) and draw from them, instead of running the
        compressor on every batch: the same draws and the same summaries, far cheaper.
        ``None`` (default): whenever the augmentation is a finite set (no circular rolls).

    Returns
    -------
        The checkpoint path and its record.

    Notes
    -----
    Every batch draws, for each of its tiles, a noise realisation and a random symmetry of the
    face, and takes the frozen compressor's summary of them, so each epoch sees new summaries; the
    learning-rate schedule, the best state and early stopping watch the NLL of the summaries
    of the NPE-validation set's un-augmented tiles (realisation 0). The test set is not
    touched. The summaries are standardised (Omega_m, S8) estimates, the targets the
    standardised true parameters.

    Raises
    ------
    lensing_core.io.InputMissingError
        No shards or no trained compressor (names the file).
    ValueError
        Corrupt or incompatible compressor checkpoint, norm stats that do not match the model,
        a split that does not fit the shards: the message names the configuration and file.
    """
    label = _label(lmax, noise_level)
    device = resolve_device(device)
    trained = _load_trained(root, lmax, noise_level, device, cache_dir)
    rows_train, rows_val = trained.split.npe_train, trained.split.npe_val
    if len(rows_train) == 0 or len(rows_val) == 0:
        msg = (
            f"{label}: the NPE needs NPE-train and NPE-validation tiles, the split has "
            f"{trained.split}"
        )
        raise ValueError(msg)
    compressor = trained.compressor
    groups = torch.from_numpy(realization_rows(trained.table, rows_train))  # (n_train, R)
    use_cache = not cfg.augment_rolls if summary_cache is None else summary_cache
    if use_cache and cfg.augment_rolls:
        raise ValueError(f"{label}: no summary cache with circular rolls (not a finite set)")
    cache = (
        summary_table(compressor, trained.table, groups.numpy(), cfg.symmetries)
        if use_cache
        else None
    )

    def make_batch(
        indices: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if groups.shape[1] > 1:
            picks = torch.randint(groups.shape[1], (len(indices),), generator=generator)
        else:  # one realisation: no draw, so the augmentation stream is the earlier one
            picks = torch.zeros(len(indices), dtype=torch.int64)
        rows = groups[indices, picks].numpy()
        if cache is not None:  # the same draw as augment_tiles, then a look-up
            choice = draw_symmetries(len(indices), cfg.symmetries, generator=generator)
            return cache[indices, picks, choice.to(cache.device)], _theta_norm(trained, rows)
        tiles = augment_tiles(
            _tiles_tensor(trained.table, rows),
            symmetries=cfg.symmetries,
            rolls=cfg.augment_rolls,
            generator=generator,
        )
        return compressor.compress(tiles, batch_size=COMPRESS_BATCH), _theta_norm(trained, rows)

    val_data = (
        compressor.compress(_tiles_tensor(trained.table, rows_val), batch_size=COMPRESS_BATCH),
        _theta_norm(trained, rows_val),
    )
    fits = fit_npe_seeds(make_batch, val_data, cfg, n_train=len(rows_train), device=device)
    npe_files = root.npe(lmax, noise_level)
    record = {
        "config": config_name(lmax, noise_level),
        "lmax": int(lmax),
        "noise_level": noise_level,
        "param_names": list(trained.stats.param_names),
        "theta_mean": trained.stats.theta_mean.tolist(),
        "theta_std": trained.stats.theta_std.tolist(),
        "compressor_checkpoint": str(trained.best_ckpt),
        "compressor_sha256": file_sha256(trained.best_ckpt),
        "shards_content_hash": trained.report.content_hash,
        "n_train": len(rows_train),
        "n_val": len(rows_val),
        "noise_realizations": int(groups.shape[1]),
        "split_kind": trained.split.kind,
        "symmetries": cfg.symmetries,
        "augment_rolls": cfg.augment_rolls,
        "summary_cache": cache is not None,
        "device": device,
        **{k: v for k, v in fits[0].to_record().items() if k != "history"},
        "val_nll_history": [h["val_nll"] for h in fits[0].history],
        "n_seeds": len(fits),
        "best_val_nll_seeds": [f.best_val_nll for f in fits],
        "elapsed_s_total": sum(f.elapsed_s for f in fits),  # every seed's training
    }
    path = save_npe_seeds(npe_files.checkpoint, fits, cfg, record, tmp_root=root.tmp_root)[0]
    npe_files.fom_result.unlink(missing_ok=True)  # the report of an older NPE
    logger.info("%s: %d NPEs (seeds) written to %s", label, len(fits), path)
    return NPETrainingResult(checkpoint=path, record=record)


def fom_report(
    root: DataRoot,
    lmax: int,
    noise_level: str,
    *,
    device: str = "auto",
    cache_dir: Path | None = None,
) -> FomReport:
    """
    The figure-of-merit report of one configuration.

    Parameters
    ----------
    root
        The data root.
    lmax, noise_level
        The configuration; its compressor and NPE must be trained.
    device
        Where the networks run.
    cache_dir
        See :func:`open_config`.

    Returns
    -------
        Paths, record and figure; ``fom_result.json`` and the PNG are written atomically.

    Raises
    ------
    lensing_core.io.InputMissingError
        No shards, compressor or NPE checkpoint.
    ValueError
        The NPE was trained on another compressor than the current one, the fiducial sim has
        no tiles in the shards, or a file is corrupt: the message names the configuration and
        the file.
    """
    label = _label(lmax, noise_level)
    device = resolve_device(device)
    trained = _load_trained(root, lmax, noise_level, device, cache_dir)
    npe_files = root.npe(lmax, noise_level)
    npe_path = npe_files.checkpoint
    try:
        npes = load_npe_seeds(npe_path, map_location=device)
    except FileNotFoundError as err:
        raise InputMissingError(f"{label}: {err}; train the NPE first") from None
    except ValueError as err:
        raise ValueError(f"{label}: {err}") from None
    compressor_sha = file_sha256(trained.best_ckpt)
    if any(npe.extra.get("compressor_sha256") != compressor_sha for npe in npes):
        msg = (
            f"{label}: {npe_path} was trained on another compressor than {trained.best_ckpt} "
            "(it changed since); train the NPE again"
        )
        raise ValueError(msg)
    split = trained.split
    check_fiducial(split, root, lmax, noise_level)
    table = trained.table
    fid_summaries = trained.compressor.compress(
        _tiles_tensor(table, split.fiducial), batch_size=COMPRESS_BATCH
    )
    test_summaries = trained.compressor.compress(
        _tiles_tensor(table, split.test), batch_size=COMPRESS_BATCH
    )
    return finish_fom_report(
        root,
        lmax,
        noise_level,
        summary="field",
        theta=table.theta,
        sim_id=table.sim_id,
        split=split,
        theta_mean=trained.stats.theta_mean,
        theta_std=trained.stats.theta_std,
        fiducial=[npe_posteriors(npe.model, fid_summaries) for npe in npes],
        test=[npe_posteriors(npe.model, test_summaries) for npe in npes],
        seeds=[int(npe.extra.get("seed", npe.config.seed)) for npe in npes],
        compressor_checkpoint=trained.best_ckpt,
        extra={
            "compressor_loss": trained.compressor.cfg.loss,
            "r2_test": evaluate_r2(trained.compressor, table, split.test),
            "npe_checkpoint": str(npe_path),
            "shards_content_hash": trained.report.content_hash,
        },
    )
