"""The power-spectrum baseline of one configuration: band powers of every tile row.

The band powers (:class:`lensing_core.sky.power.TilePowerEstimator`) are computed from the
same shard rows the field compressor reads, in the same row order, so the field's split
(``split.json``: sims per set, fiducial holdout, noise realisations) indexes them directly.
Written to ``models/cl/lmax{L}_{noise}/band_powers.npz`` (array ``band_powers``
``(n_rows, 10, n_bands)``, ``edges``, each row's ``theta`` and identifiers, and a metadata
record with the estimator's settings, the shards' content hash and the fingerprint of the
per-row sim ids).

:func:`cl_fom_report` is the power-spectrum inference of a configuration: the band powers'
features (:func:`~lensing_core.inference.cl_compressor.cl_features`) compressed to
(Omega_m, S8) by an MLP, then the Gaussian NPE of the same settings as the field's, and the
same FoM and calibration record (:func:`~lensing_core.inference.report.finish_fom_report`).
The split is the field compressor's ``split.json`` when there is one (else the same function
makes the same split from the same rows), so both see the same sims in each set. The band
powers of a face tile do not change under the face's symmetries (they depend on ``|ell|``
only, and the window is symmetric), so the power-spectrum models are not augmented; every
noise realisation of a training tile is used, one drawn per tile and epoch for the NPE.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lensing_core._types import FloatArray
from lensing_core.dataset.loader import realization_groups_of
from lensing_core.dataset.parquet import read_shard_manifest
from lensing_core.dataset.schema import config_name
from lensing_core.dataset.splits import Split, SplitSpec, load_split, sim_ids_sha256
from lensing_core.inference.cl_compressor import cl_features, fit_cl_compressor, save_cl_compressor
from lensing_core.inference.config import NPEConfig
from lensing_core.inference.npe import fit_npe_seeds, npe_seeds, save_npe_seeds
from lensing_core.inference.pipeline import (
    config_split,
    open_config,
    resolve_device,
)
from lensing_core.inference.report import (
    FomReport,
    check_fiducial,
    finish_fom_report,
    npe_posteriors,
)
from lensing_core.inference.training import r2_scores
from lensing_core.io import InputMissingError, read_npz, write_npz
from lensing_core.sims.catalog import PARAM_NAMES
from lensing_core.sky.power import PAIRS, TilePowerEstimator
from lensing_core.storage import DataRoot

logger = logging.getLogger(__name__)

#: Identifiers of each row stored with its band powers (the realisation groups need them).
ROW_COLUMNS = ("sim_id", "orientation_id", "tile_id", "noise_realization")
BATCH_ROWS = 64  # tiles transformed at once: 64 x 4 x 512^2 complex128 is 1 GiB at lmax 1000


@dataclass(frozen=True)
class BandPowersResult:
    """
    The band powers of one configuration, written.

    Attributes
    ----------
    path
        ``models/cl/lmax{L}_{noise}/band_powers.npz``.
    band_powers
        ``(n_rows, 10, n_bands)`` in steradians, rows in shard order.
    edges
        Science band edges ``(n_bands + 1,)``.
    record
        The metadata written with them.
    """

    path: Path
    band_powers: FloatArray
    edges: FloatArray
    record: dict[str, Any]

    def to_metadata(self) -> dict[str, Any]:
        """The file, the settings and the auto band powers averaged over every row."""
        auto = [PAIRS.index((i, i)) for i in range(4)]
        return {
            "path": self.path,
            **self.record,
            "mean_auto_band_powers": self.band_powers[:, auto].mean(axis=0).tolist(),
        }


def compute_band_powers(
    root: DataRoot,
    lmax: int,
    noise_level: str,
    *,
    n_bands: int = 10,
    cache_dir: Path | None = None,
) -> BandPowersResult:
    """
    Band powers of every tile row of one configuration, written atomically.

    Parameters
    ----------
    root
        The data root.
    lmax, noise_level
        The configuration.
    n_bands
        Linear science bands from the tile's fundamental ell to ``0.96 lmax``.
    cache_dir
        See :func:`lensing_core.inference.pipeline.open_config`.

    Raises
    ------
    lensing_core.io.InputMissingError
        No shards for the configuration.
    ValueError
        Tiles too small for the bands, or band powers with non-finite values: the message
        names the configuration (and the shards).
    """
    start = time.perf_counter()
    label = f"configuration {config_name(lmax, noise_level)}"
    table, report = open_config(root, lmax, noise_level, cache_dir=cache_dir)
    n_pix = table.tile_shape[-1]
    try:
        estimator = TilePowerEstimator(n_pix, lmax, n_bands=n_bands)
    except ValueError as err:
        raise ValueError(f"{label}: {err}") from None
    out = np.empty((len(table), len(PAIRS), n_bands))
    for first in range(0, len(table), BATCH_ROWS):
        rows = slice(first, first + BATCH_ROWS)
        out[rows] = estimator.band_powers(table.tiles[rows])
    bad = np.flatnonzero(~np.isfinite(out).all(axis=(1, 2)))
    if len(bad):
        msg = (
            f"{label}: band powers of {len(bad)} rows are not finite (first row {bad[0]}, "
            f"sim {table.sim_id[bad[0]]}) in {report.out_dir}"
        )
        raise ValueError(msg)
    record = {
        "config": config_name(lmax, noise_level),
        "rows": len(table),
        "noise_realizations": int(table.realization_groups[0].shape[1]),
        "n_pix": n_pix,
        "lmax": lmax,
        "n_bands": n_bands,
        "edge_margin": estimator.edge_margin,
        "ell_fundamental": estimator.ell_fundamental,
        "pairs": [list(p) for p in PAIRS],
        "shards_content_hash": report.content_hash,
        "sim_ids_sha256": sim_ids_sha256(table.sim_id),
        "seconds": round(time.perf_counter() - start, 2),
    }
    path = write_npz(
        root.band_powers_path(lmax, noise_level),
        {
            "band_powers": out,
            "edges": estimator.edges,
            "theta": table.theta,
            **{name: np.asarray(table.columns[name]) for name in ROW_COLUMNS},
        },
        record,
        tmp_root=root.tmp_root,
    )
    logger.info("%s: band powers of %d rows in %s", label, len(table), path)
    return BandPowersResult(path, out, estimator.edges, record)


def _read_band_powers(
    root: DataRoot, lmax: int, noise_level: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The band powers of a configuration, checked against the current shards."""
    label = f"configuration {config_name(lmax, noise_level)}"
    key = f"{lmax}|{noise_level}"
    path = root.band_powers_path(lmax, noise_level)
    hint = f"Make them with: dagster asset materialize --select band_powers --partition '{key}'"
    shard_dir = root.shards(lmax, noise_level).dir
    try:
        manifest = read_shard_manifest(shard_dir)
    except FileNotFoundError as err:
        raise InputMissingError(f"{label}: no tile shards ({err})") from None
    except ValueError as err:
        raise ValueError(f"{label}: {err}") from None
    try:
        arrays, meta = read_npz(
            path,
            ("band_powers", "theta", *ROW_COLUMNS),
            what=f"band powers of {label}",
            missing_hint=hint,
        )
    except ValueError as err:
        raise ValueError(f"{label}: {err}") from None
    if meta.get("shards_content_hash") != manifest.content_hash:
        msg = (
            f"{label}: {path} was computed from other shards than those in {shard_dir} "
            f"(content hash {meta.get('shards_content_hash')} against {manifest.content_hash}); "
            f"compute them again. {hint}"
        )
        raise ValueError(msg)
    bp = arrays["band_powers"]
    bad = np.flatnonzero(~np.isfinite(bp).all(axis=(1, 2)))
    if len(bad):
        msg = (
            f"{label}: {path} holds non-finite band powers in {len(bad)} rows (first row "
            f"{bad[0]}, sim {arrays['sim_id'][bad[0]]}); compute them again. {hint}"
        )
        raise ValueError(msg)
    meta["shards_content_hash"] = manifest.content_hash
    return arrays, meta


def _split_of(
    root: DataRoot, lmax: int, noise_level: str, rows: dict[str, np.ndarray], spec: SplitSpec
) -> Split:
    """The field compressor's split when it fits the rows, else the same split made afresh."""
    label = f"configuration {config_name(lmax, noise_level)}"
    field_split = root.compressor(lmax, noise_level).split
    if field_split.is_file():
        try:
            split = load_split(field_split)
            split.check_rows(rows["sim_id"], what=f"band powers of {label}")
            return split
        except ValueError as err:
            logger.warning("%s: not using %s (%s); making the split", label, field_split, err)
    return config_split(rows, spec, label, root.band_powers_path(lmax, noise_level))


def cl_fom_report(
    root: DataRoot,
    lmax: int,
    noise_level: str,
    npe_cfg: NPEConfig,
    *,
    split: SplitSpec | None = None,
    device: str = "auto",
    compressor_epochs: int = 200,
) -> FomReport:
    """
    The power-spectrum FoM report of one configuration, from its band powers.

    Parameters
    ----------
    root
        The data root.
    lmax, noise_level
        The configuration; its band powers (:func:`compute_band_powers`) must exist.
    npe_cfg
        The NPE settings, those of the field's NPE (``npe_cfg.seed`` also seeds the MLP).
    split
        Used when the field compressor has no ``split.json``: how to split the rows
        (by simulation if not given).
    device
        Where the NPE trains (``"auto"``: the GPU when there is one).
    compressor_epochs
        Most epochs of the band-power MLP (it stops early on compressor-validation).

    Returns
    -------
        The record (``summary`` ``"cl"``) and figure, as for the field report; also written:
        ``models/cl/lmax{L}_{noise}/cl_compressor.pt``, ``npe_best.ckpt``,
        ``fom_result.json`` and ``reports/fom_cl/lmax{L}_{noise}.png``.

    Raises
    ------
    lensing_core.io.InputMissingError
        No band powers or no shards (names the file and the command that makes them).
    ValueError
        Band powers of other shards, non-finite or non-positive band powers, no fiducial
        tile, too few sims for the split: the message names the configuration and the file.
    """
    label = f"configuration {config_name(lmax, noise_level)}"
    device = resolve_device(device)
    arrays, meta = _read_band_powers(root, lmax, noise_level)
    rows_split = _split_of(root, lmax, noise_level, arrays, split or SplitSpec())
    check_fiducial(rows_split, root, lmax, noise_level)
    theta = np.asarray(arrays["theta"], dtype=np.float64)
    try:
        features = cl_features(arrays["band_powers"])
    except ValueError as err:
        path = root.band_powers_path(lmax, noise_level)
        raise ValueError(f"{label}: {path}: {err}") from None
    groups, tile = realization_groups_of(arrays, what=label)
    compressor = fit_cl_compressor(
        features,
        theta,
        groups[tile[rows_split.compressor_train]].reshape(-1),  # every noise realisation
        rows_split.compressor_val,
        max_epochs=compressor_epochs,
        seed=npe_cfg.seed,
    )
    compressor_path = save_cl_compressor(
        root.cl_compressor_path(lmax, noise_level), compressor, tmp_root=root.tmp_root
    )
    summaries = compressor.compress(features)  # (n_rows, 2), standardised estimates
    theta_norm = torch.from_numpy(
        ((theta - compressor.theta_mean) / compressor.theta_std).astype(np.float32)
    )
    npe_groups = torch.from_numpy(groups[tile[rows_split.npe_train]])  # (n_train, R)

    def make_batch(
        indices: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        picks = torch.randint(npe_groups.shape[1], (len(indices),), generator=generator)
        rows = npe_groups[indices, picks]
        return summaries[rows], theta_norm[rows]

    val = torch.tensor(rows_split.npe_val)
    fits = fit_npe_seeds(
        make_batch,
        (summaries[val], theta_norm[val]),
        npe_cfg,
        n_train=len(npe_groups),
        device=device,
    )
    npe_record = {k: v for k, v in fits[0].to_record().items() if k != "history"}
    npe_record["best_val_nll_seeds"] = [f.best_val_nll for f in fits]
    npe_path = save_npe_seeds(
        root.cl_npe_path(lmax, noise_level),
        fits,
        npe_cfg,
        {"config": config_name(lmax, noise_level), "compressor_checkpoint": str(compressor_path)},
        tmp_root=root.tmp_root,
    )[0]

    test = rows_split.test
    fid_summaries = summaries[torch.from_numpy(np.array(rows_split.fiducial))]
    test_summaries = summaries[torch.from_numpy(np.array(test))]
    return finish_fom_report(
        root,
        lmax,
        noise_level,
        summary="cl",
        theta=theta,
        sim_id=arrays["sim_id"],
        split=rows_split,
        theta_mean=compressor.theta_mean,
        theta_std=compressor.theta_std,
        fiducial=[npe_posteriors(f.model, fid_summaries) for f in fits],
        test=[npe_posteriors(f.model, test_summaries) for f in fits],
        seeds=npe_seeds(npe_cfg),
        compressor_checkpoint=compressor_path,
        extra={
            "compressor_loss": "mse",
            "r2_test": r2_scores(
                compressor.predict_theta(features[test]), theta[test], PARAM_NAMES
            ),
            "band_powers": str(root.band_powers_path(lmax, noise_level)),
            "n_bands": meta.get("n_bands"),
            "cl_compressor": compressor.to_record(),
            "npe": npe_record,
            "npe_checkpoint": str(npe_path),
            "shards_content_hash": meta["shards_content_hash"],
        },
    )
